"""Request matches: our RequestMatch to Gateway API match objects, ANDed into a source rule's match.

Gateway API picks the most specific match across rules, not the first rule (specs §2.8), so a
managed rule must repeat the conditions of the rule it shadows (path, method, query, headers,
gRPC method) and add its own: a header rule that drops the path loses to a stable ``/api`` rule
(plugin #207). The AND of two conditions on the same field is computed exactly where it can be
(nested path prefixes, equal values, disjoint literals) and refused where it cannot.

The same two tools order managed routes against each other: :func:`intersect` ANDs two Gateway
API matches and :func:`outranks` compares their precedence, which depends on the match alone
(path kind and length, method, header and query counts), never on the request.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import re2

from routers.model import HeaderMatch, PathMatch, QueryParamMatch, RequestMatch
from routers.model._validators import is_field_value
from routers.planning import matching

__all__ = [
    "Unexpressible",
    "combine_grpc",
    "combine_http",
    "gateway_path",
    "gateway_string_match",
    "intersect",
    "outranks",
    "path_is_valid",
    "steals_from",
]

JSON = dict[str, Any]

PATH_PREFIX_ALL: JSON = {"type": "PathPrefix", "value": "/"}
_HEADER_VALUE_MAX = 4096
_QUERY_VALUE_MAX = 1024
_PATH_VALUE_MAX = 1024
# CRD CEL for Exact/PathPrefix paths (standard and experimental since v1.0).
_PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
_PATH_FORBIDDEN = ("//", "/./", "/../", "%2f", "%2F", "#")


class Unexpressible(Exception):
    """A condition Gateway API cannot state; the caller turns it into an UnsupportedError."""


def gateway_string_match(m: HeaderMatch | QueryParamMatch, *, query: bool = False) -> JSON:
    """Exact stays Exact; prefix and regex become anchored RegularExpressions (plugin #237)."""
    if m.kind == "exact":
        out = {"name": m.name, "type": "Exact", "value": m.value}
    else:
        out = {
            "name": m.name,
            "type": "RegularExpression",
            "value": matching.to_regex(m.kind, m.value),
        }
    limit = _QUERY_VALUE_MAX if query else _HEADER_VALUE_MAX
    what = "query parameter" if query else "header"
    if len(out["value"]) > limit:
        raise Unexpressible(
            f"{what} {m.name!r}: the value is {len(out['value'])} characters as Gateway API "
            f"writes it, the CRD allows {limit}"
        )
    # The experimental channel's header value pattern, enforced everywhere so one plan fits both.
    if not is_field_value(out["value"]):
        raise Unexpressible(
            f"{what} {m.name!r}: value {out['value']!r} is not printable ASCII with single inner "
            "spaces (the experimental CRD's pattern)"
        )
    return out


def gateway_path(p: PathMatch) -> JSON:
    """Our prefix maps to PathPrefix, Gateway API's element-wise prefix (``/api`` matches
    ``/api/x`` but not ``/apix``): the native type keeps precedence well-defined, which a regex
    path (implementation-specific precedence) would not."""
    if p.kind == "regex":
        out = {"type": "RegularExpression", "value": matching.anchored(p.value)}
    else:
        out = {"type": "Exact" if p.kind == "exact" else "PathPrefix", "value": p.value}
    if len(out["value"]) > _PATH_VALUE_MAX:
        raise Unexpressible(
            f"path {p.value!r} is longer than the CRD's {_PATH_VALUE_MAX} characters"
        )
    if out["type"] != "RegularExpression":
        problem = path_is_valid(out["value"])
        if problem:
            raise Unexpressible(f"path {p.value!r} {problem}")
    return out


def path_is_valid(value: str) -> str | None:
    """The CRD's CEL rules for Exact/PathPrefix values; a reason when violated."""
    if not value.startswith("/"):
        return "must start with '/'"
    for bad in _PATH_FORBIDDEN:
        if bad in value:
            return f"must not contain {bad!r} (Gateway API CRD validation)"
    if value.endswith(("/..", "/.")):
        return "must not end with '/..' or '/.' (Gateway API CRD validation)"
    if not _PATH_CHARS.fullmatch(value):
        return "contains characters Gateway API does not allow in a path (CRD validation)"
    return None


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` lies within PathPrefix ``prefix`` (element-wise, trailing '/' ignored)."""
    base = prefix.rstrip("/")
    return base in ("", path) or path.startswith(base + "/")


def _intersect_path(source: Mapping[str, Any] | None, wanted: JSON) -> JSON | None:
    """The one path condition equal to ``source AND wanted``; None when nothing matches both."""
    if source is None or (
        source.get("type") == "PathPrefix" and _under("/", str(source.get("value")))
    ):
        return wanted
    st, sv = source.get("type"), str(source.get("value"))
    wt, wv = wanted["type"], wanted["value"]
    if st == wt and sv == wv:
        return wanted
    if "RegularExpression" in (st, wt):
        raise Unexpressible(
            f"cannot AND path {wt} {wv!r} with the source rule's path {st} {sv!r} "
            "(a regular-expression path intersection has no single Gateway API form)"
        )
    if st == "PathPrefix" and wt == "PathPrefix":
        if _under(wv, sv):
            return wanted
        return dict(source) if _under(sv, wv) else None
    if st == "PathPrefix" and wt == "Exact":
        return wanted if _under(wv, sv) else None
    if st == "Exact" and wt == "PathPrefix":
        return dict(source) if _under(sv, wv) else None
    if st == "Exact" and wt == "Exact":
        return None
    raise Unexpressible(f"the source rule's path type {st!r} is unknown")


def _more_specific(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Path ``a`` beats path ``b`` in Gateway API precedence for a request matching both."""
    at, bt = a.get("type"), b.get("type")
    av, bv = str(a.get("value")), str(b.get("value"))
    if at == "Exact":
        return bt == "PathPrefix" and _under(av, bv)
    if at == "PathPrefix" and bt == "PathPrefix":
        return _under(av, bv) and av.rstrip("/") != bv.rstrip("/")
    return False


def _within(p: Mapping[str, Any], q: Mapping[str, Any]) -> bool:
    """Every request matching path ``p`` also matches path ``q``."""
    if q.get("type") == "Exact":
        return p.get("type") == "Exact" and p.get("value") == q.get("value")
    return _under(str(p.get("value")), str(q.get("value")))


def steals_from(
    narrowed: Mapping[str, Any], source: Mapping[str, Any], other: Mapping[str, Any]
) -> bool:
    """Whether a managed match whose path was narrowed from ``source`` to ``narrowed`` would win
    requests that ``other`` (another rule's match) wins today.

    Narrowing raises precedence: ``/api/orders`` derived from a ``/`` rule would beat an
    ``/api`` rule that owns those requests. True means: drop the managed match, ``other`` owns
    all of it. Raises when ``other`` owns only part of it (extra conditions) or when a regex path
    makes precedence implementation-specific.
    """
    theirs = other.get("path")
    if not isinstance(theirs, Mapping):
        return False
    types = {narrowed.get("type"), source.get("type"), theirs.get("type")}
    if "RegularExpression" in types:
        if theirs.get("type") == "RegularExpression" or _more_specific(theirs, source):
            raise Unexpressible(
                f"cannot tell whether path {narrowed.get('value')!r} overlaps another rule's path "
                f"{theirs.get('value')!r}: regular-expression precedence is implementation-specific"
            )
        return False
    if not (_more_specific(theirs, source) and _within(narrowed, theirs)):
        return False
    extra = [k for k in ("method", "headers", "queryParams") if other.get(k)]
    if extra:
        raise Unexpressible(
            f"path {narrowed.get('value')!r} lies inside another rule's path "
            f"{theirs.get('value')!r}, which owns only the requests with its {', '.join(extra)}; "
            "a managed rule cannot exclude those"
        )
    return True


def _merge_named(
    existing: Sequence[Any],
    added: Sequence[JSON],
    *,
    fold_case: bool,
    what: str,
    owner: str = "the source rule",
) -> list[Any] | None:
    """AND two lists of name/type/value conditions; None when they exclude each other."""
    out = [copy.deepcopy(x) for x in existing]

    def key(name: object) -> str:
        return str(name).lower() if fold_case else str(name)

    index = {key(x.get("name")): x for x in out if isinstance(x, Mapping)}
    for cond in added:
        have = index.get(key(cond["name"]))
        if have is None:
            out.append(cond)
            index[key(cond["name"])] = cond
            continue
        both = _and_condition(have, cond)
        if both is _UNKNOWN:
            raise Unexpressible(
                f"{what} {cond['name']!r} is already matched by {owner} "
                f"({have.get('type', 'Exact')} {have.get('value')!r}); Gateway API allows one "
                "condition per name and no single condition states both"
            )
        if both is None:
            return None
        if both is not have:
            out[out.index(have)] = both
            index[key(cond["name"])] = both
    return out


_UNKNOWN: Any = object()
_META = frozenset("\\.+*?()|[]{}^$")


def _literal_prefix(regex: str) -> str | None:
    """The literal ``p`` when ``regex`` is exactly :func:`matching.prefix_regex` of ``p``."""
    if not (regex.startswith("^") and regex.endswith(".*")):
        return None
    body, out, k = regex[1:-2], [], 0
    while k < len(body):
        c = body[k]
        if c == "\\" and k + 1 < len(body) and body[k + 1] in _META:
            out.append(body[k + 1])
            k += 2
            continue
        if c in _META:
            return None
        out.append(c)
        k += 1
    literal = "".join(out)
    return literal if matching.prefix_regex(literal) == regex else None


def _regex_verdict(pattern: str, value: str) -> bool | None:
    """Whether ``pattern`` matches ``value`` under both full-match and search semantics (the
    spec leaves the choice to implementations); None when they disagree or RE2 rejects it."""
    try:
        compiled = re2.compile(pattern)
    except re2.error:
        return None
    full = compiled.fullmatch(value) is not None
    return full if full == (compiled.search(value) is not None) else None


def _and_condition(have: Mapping[str, Any], cond: Mapping[str, Any]) -> Any:
    """One condition equal to ``have AND cond`` on the same name: ``have`` itself when it
    already implies ``cond``, None when they exclude each other, ``_UNKNOWN`` when no single
    condition states it."""
    ht, ct = have.get("type", "Exact"), cond.get("type", "Exact")
    hv, cv = str(have.get("value")), str(cond.get("value"))
    if ht == ct and hv == cv:
        return have
    if ht == "Exact" and ct == "Exact":
        return None
    if ht == "Exact" or ct == "Exact":
        exact, regex = (have, cv) if ht == "Exact" else (cond, hv)
        verdict = _regex_verdict(regex, str(exact.get("value")))
        if verdict is None:
            return _UNKNOWN
        return exact if verdict else None
    hp, cp = _literal_prefix(hv), _literal_prefix(cv)
    if hp is None or cp is None:
        return _UNKNOWN
    if hp.startswith(cp):
        return have
    return cond if cp.startswith(hp) else None


def combine_http(source: Mapping[str, Any], wanted: RequestMatch) -> JSON | None:
    """``source AND wanted`` as one HTTPRouteMatch (source's unknown fields kept); None if empty."""
    out: JSON = copy.deepcopy(dict(source))
    if wanted.path is not None:
        path = _intersect_path(out.get("path"), gateway_path(wanted.path))
        if path is None:
            return None
        out["path"] = path
    if wanted.method is not None:
        have = out.get("method")
        if have is None:
            out["method"] = wanted.method.value
        elif have != wanted.method.value:
            return None
    if wanted.headers:
        headers = _merge_named(
            out.get("headers") or [],
            [gateway_string_match(h) for h in wanted.headers],
            fold_case=True,
            what="header",
        )
        if headers is None:
            return None
        out["headers"] = headers
    if wanted.query_params:
        params = _merge_named(
            out.get("queryParams") or [],
            [gateway_string_match(q, query=True) for q in wanted.query_params],
            fold_case=False,
            what="query parameter",
        )
        if params is None:
            return None
        out["queryParams"] = params
    return out


def combine_grpc(source: Mapping[str, Any] | None, wanted: RequestMatch) -> JSON | None:
    """``source AND wanted`` as one GRPCRouteMatch; the source's gRPC method match is kept."""
    if wanted.path is not None or wanted.method is not None or wanted.query_params:
        raise Unexpressible(
            "a GRPCRoute matches gRPC service/method and headers only; path, HTTP method and "
            "query parameter conditions cannot be expressed"
        )
    out: JSON = copy.deepcopy(dict(source or {}))
    headers = _merge_named(
        out.get("headers") or [],
        [gateway_string_match(h) for h in wanted.headers],
        fold_case=True,
        what="header",
    )
    if headers is None:
        return None
    out["headers"] = headers
    return out


# -- managed routes against each other ---------------------------------------------------------


_EMPTY: Any = object()
"""No request matches both."""


def _catch_all(path: Mapping[str, Any]) -> bool:
    return path.get("type", "PathPrefix") == "PathPrefix" and _under("/", str(path.get("value")))


def _intersect_paths(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Any:
    a, b = a or PATH_PREFIX_ALL, b or PATH_PREFIX_ALL
    if _catch_all(b):
        return dict(a)
    path = _intersect_path(a, dict(b))
    return _EMPTY if path is None else path


def _intersect_grpc_method(a: Any, b: Any) -> Any:
    if not isinstance(a, Mapping) or not (a.get("service") or a.get("method")):
        return copy.deepcopy(b)
    if not isinstance(b, Mapping) or not (b.get("service") or b.get("method")):
        return copy.deepcopy(a)
    if _canon(a) == _canon(b):
        return copy.deepcopy(dict(a))
    if "RegularExpression" in (a.get("type", "Exact"), b.get("type", "Exact")):
        raise Unexpressible(
            f"cannot AND gRPC method matches {dict(a)} and {dict(b)} (regular expressions)"
        )
    out = copy.deepcopy(dict(a))
    for field in ("service", "method"):
        if a.get(field) and b.get(field) and a.get(field) != b.get(field):
            return _EMPTY
        if b.get(field):
            out[field] = b[field]
    return out


def _canon(value: Any) -> Any:
    """Order-insensitive comparable form of a small JSON mapping (CRD defaults applied)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _canon(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_canon(v) for v in value)
    return value


def intersect(
    kind: Literal["http", "grpc"], a: Mapping[str, Any], b: Mapping[str, Any]
) -> JSON | None:
    """The one match equal to ``a AND b`` (both with CRD defaults); None when they are disjoint.

    Raises Unexpressible when no single match states it (two different regular expressions).
    """
    out: JSON = copy.deepcopy(dict(a))
    if kind == "http":
        if a.get("path") is not None or b.get("path") is not None:
            path = _intersect_paths(a.get("path"), b.get("path"))
            if path is _EMPTY:
                return None
            out["path"] = path
        ma, mb = a.get("method"), b.get("method")
        if ma and mb and ma != mb:
            return None
        if mb:
            out["method"] = mb
    else:
        method = _intersect_grpc_method(a.get("method"), b.get("method"))
        if method is _EMPTY:
            return None
        if method is not None:
            out["method"] = method
    for key, fold in (("headers", True), ("queryParams", False)):
        theirs = [x for x in b.get(key) or [] if isinstance(x, Mapping)]
        if not theirs:
            continue
        merged = _merge_named(
            out.get(key) or [],
            [{"type": "Exact", **x} for x in theirs],
            fold_case=fold,
            what="header" if fold else "query parameter",
            owner="the other match",
        )
        if merged is None:
            return None
        out[key] = merged
    return out


def _distinct(items: Any, fold: bool) -> int:
    names = {
        (str(x.get("name")).lower() if fold else str(x.get("name")))
        for x in items or []
        if isinstance(x, Mapping)
    }
    return len(names)


def _http_rank(m: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    path = m.get("path") or PATH_PREFIX_ALL
    value = str(path.get("value", "/"))
    exact = path.get("type") == "Exact"
    head = (2, len(value)) if exact else (1, len(value.rstrip("/")))
    return (
        *head,
        1 if m.get("method") else 0,
        _distinct(m.get("headers"), True),
        _distinct(m.get("queryParams"), False),
    )


def _grpc_rank(m: Mapping[str, Any]) -> tuple[int, int, int]:
    raw = m.get("method")
    method: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return (
        len(str(method.get("service") or "")),
        len(str(method.get("method") or "")),
        _distinct(m.get("headers"), True),
    )


def outranks(kind: Literal["http", "grpc"], a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether match ``a`` takes precedence over match ``b`` for a request matching both
    (specs §2.8; equal rank goes to the earlier rule, so this is strict).

    Raises Unexpressible when a regular expression (HTTP path, gRPC method) makes the order
    implementation-specific.
    """
    if kind == "http":
        pa, pb = a.get("path") or PATH_PREFIX_ALL, b.get("path") or PATH_PREFIX_ALL
        regex = "RegularExpression" in (pa.get("type"), pb.get("type"))
        if regex and _canon(pa) != _canon(pb):
            raise Unexpressible(
                f"the precedence of path {pa.get('type')} {pa.get('value')!r} against "
                f"{pb.get('type')} {pb.get('value')!r} is implementation-specific"
            )
        return _http_rank(a) > _http_rank(b)
    ma, mb = a.get("method") or {}, b.get("method") or {}
    regex = "RegularExpression" in (ma.get("type"), mb.get("type"))
    if regex and _canon(ma) != _canon(mb):
        raise Unexpressible(
            f"the precedence of gRPC method match {dict(ma)} against {dict(mb)} is "
            "implementation-specific (regular expression)"
        )
    return _grpc_rank(a) > _grpc_rank(b)
