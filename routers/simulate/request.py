"""The request a simulation routes, and the ``'GET /api -H X-Canary:always'`` syntax for it.

Headers keep their order and repeats (a data plane sees every occurrence); names compare
case-insensitively, values case-sensitively. Cookies and query parameters are pairs for the same
reason. ``Host`` is an ordinary header: hostname-aware targets read it from there.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from routers.errors import ConfigError, Problem

__all__ = ["Request", "parse_request"]

Pairs = tuple[tuple[str, str], ...]

_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~")


@dataclass(frozen=True)
class Request:
    """One HTTP request as a router sees it (path without the query string)."""

    method: str = "GET"
    path: str = "/"
    headers: Pairs = ()
    cookies: Pairs = ()
    query: Pairs = ()
    scheme: str = "http"
    tags: tuple[str, ...] = field(default=(), compare=False)
    """Free-form labels for reports (e.g. which generator produced the request)."""

    def header_values(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self.headers if k.lower() == key]

    def header(self, name: str) -> str | None:
        """All occurrences joined with ``,`` (RFC 9110 field combination, as Envoy matches)."""
        values = self.header_values(name)
        return ",".join(values) if values else None

    def first_header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    @property
    def host(self) -> str | None:
        """The Host header without a port, lower-cased (hostnames are case-insensitive)."""
        value = self.first_header("host")
        if value is None:
            return None
        host = value.strip().lower()
        if host.startswith("["):
            return host.split("]", 1)[0] + "]"
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    def cookie(self, name: str) -> str | None:
        """Cookies given explicitly, then those of ``Cookie`` headers; the first one wins."""
        for k, v in self.cookies:
            if k == name:
                return v
        for line in self.header_values("cookie"):
            for part in line.split(";"):
                k, sep, v = part.strip().partition("=")
                if sep and k == name:
                    return v
        return None

    def query_values(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def with_headers(self, *pairs: tuple[str, str]) -> Request:
        return Request(
            self.method, self.path, self.headers + pairs, self.cookies, self.query, self.scheme
        )

    def __str__(self) -> str:
        parts = [self.method, self.path + ("?" + _query(self.query) if self.query else "")]
        parts += [f"-H {shlex.quote(f'{k}:{v}')}" for k, v in self.headers]
        parts += [f"-b {shlex.quote(f'{k}={v}')}" for k, v in self.cookies]
        return " ".join(parts)


def _query(pairs: Pairs) -> str:
    return "&".join(f"{k}={v}" if v else k for k, v in pairs)


def parse_request(text: str, *, field_path: str = "request") -> Request:
    """Parse ``[METHOD] PATH[?QUERY] [-H 'Name: value']... [-b name=value]...``.

    Curl's spelling on purpose: it is what people paste. ``-H Name:value`` needs no space after
    the colon; a full URL as PATH sets the Host header and the scheme.
    """

    def bad(message: str) -> ConfigError:
        return ConfigError([Problem(field_path, f"{message} (in {text!r})")])

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not words:
        raise bad("empty request; expected e.g. 'GET /api -H X-Canary:always'")
    method = "GET"
    if not words[0].startswith(("/", "http://", "https://")):
        method = words.pop(0)
        if not method or any(c not in _TOKEN for c in method):
            raise bad(f"{method!r} is not an HTTP method")
    if not words or words[0].startswith("-"):
        raise bad("missing path; it must start with '/' (or be a full http:// URL)")
    target = words.pop(0)
    headers: list[tuple[str, str]] = []
    cookies: list[tuple[str, str]] = []
    scheme = "http"
    if target.startswith(("http://", "https://")):
        url = urlsplit(target)
        scheme = url.scheme
        headers.append(("Host", url.netloc))
        path, query = url.path or "/", url.query
    else:
        path, _, query = target.partition("?")
    if not path.startswith("/"):
        raise bad(f"path {path!r} must start with '/'")
    while words:
        flag = words.pop(0)
        if flag not in ("-H", "--header", "-b", "--cookie") or not words:
            raise bad(f"unexpected {flag!r}; expected -H 'Name: value' or -b name=value")
        arg = words.pop(0)
        if flag in ("-H", "--header"):
            name, sep, value = arg.partition(":")
            name = name.strip()
            if not sep or not name or any(c not in _TOKEN for c in name):
                raise bad(f"header {arg!r} is not 'Name: value'")
            headers.append((name, value.strip()))
        else:
            for part in arg.split(";"):
                k, sep, v = part.strip().partition("=")
                if not sep or not k:
                    raise bad(f"cookie {part!r} is not name=value")
                cookies.append((k, v))
    return Request(
        method=method.upper(),
        path=path,
        headers=tuple(headers),
        cookies=tuple(cookies),
        query=tuple(parse_qsl(query, keep_blank_values=True)),
        scheme=scheme,
    )
