"""ingress-nginx annotation names, the value charsets it accepts, and header-route translation.

ingress-nginx does not reject a canary annotation whose value fails its validator: it logs a
warning and resets the field (``internal/ingress/annotations/canary``). A dropped
``canary-by-header-value`` silently turns a header route into the ``always``/``never`` form, so
every value we write is checked against the same charsets first. The charsets contain no
newline, quote, ``;`` or space, so a value can never add configuration either.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from routers.errors import Problem, UnsupportedError
from routers.model import HeaderRoute, RequestMatch
from routers.planning import matching
from routers.planning.ownership import DOMAIN

__all__ = [
    "CANARY",
    "CANARY_BY_COOKIE",
    "CANARY_BY_HEADER",
    "CANARY_BY_HEADER_PATTERN",
    "CANARY_BY_HEADER_VALUE",
    "CANARY_WEIGHT",
    "CANARY_WEIGHT_TOTAL",
    "CLASS_ANNOTATION",
    "MIRROR_HOST",
    "MIRROR_TARGET",
    "HeaderCondition",
    "check_cookie_name",
    "check_static",
    "header_condition",
]

CANARY = "canary"
CANARY_WEIGHT = "canary-weight"
CANARY_WEIGHT_TOTAL = "canary-weight-total"
CANARY_BY_HEADER = "canary-by-header"
CANARY_BY_HEADER_VALUE = "canary-by-header-value"
CANARY_BY_HEADER_PATTERN = "canary-by-header-pattern"
CANARY_BY_COOKIE = "canary-by-cookie"
MIRROR_TARGET = "mirror-target"
MIRROR_HOST = "mirror-host"
MIRROR_REQUEST_BODY = "mirror-request-body"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"

HEADER_KEYS = (CANARY_BY_HEADER, CANARY_BY_HEADER_VALUE, CANARY_BY_HEADER_PATTERN)
ROUTING_KEYS = (*HEADER_KEYS, CANARY_BY_COOKIE)
CANARY_KEYS = (CANARY, CANARY_WEIGHT, CANARY_WEIGHT_TOTAL, *ROUTING_KEYS)

# parser.BasicCharsRegex and parser.IsValidRegex of ingress-nginx (spaces refused outright: the
# basic validator strips them before checking, then uses the value with them).
BASIC = frozenset(string.ascii_letters + string.digits + "-._~/:")
REGEX = BASIC | frozenset("^$[](){}*+?|&=\\")
# nginx's ignore_invalid_headers (on by default) drops request headers whose names hold
# anything but letters, digits and '-' (and '_' with enable-underscores-in-headers).
_HEADER_NAME = frozenset(string.ascii_letters + string.digits + "-")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9._~-]+$")

_OWNED = {
    CANARY: "canary-routers sets it on the canary Ingress it creates",
    CANARY_WEIGHT: "it is the traffic state's weight",
    CANARY_WEIGHT_TOTAL: "it is derived from the traffic state's total",
    MIRROR_TARGET: "ingress-nginx ignores mirror annotations on a canary Ingress; use a mirror route",
    MIRROR_HOST: "ingress-nginx ignores mirror annotations on a canary Ingress; use mirrorHost",
    MIRROR_REQUEST_BODY: "ingress-nginx ignores mirror annotations on a canary Ingress",
}


def _bad(value: str, allowed: frozenset[str]) -> str:
    return "".join(sorted({c for c in value if c not in allowed}))


def check_cookie_name(value: str) -> None:
    if not _COOKIE_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a cookie name ingress-nginx accepts (letters, digits and -._~)"
        )


def check_static(key: str, value: str, prefix: str, where: str) -> Problem | None:
    """Problems of one config-supplied annotation on the canary Ingress."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return Problem(where, f"value {value!r} contains a control character (newline, tab, ...)")
    if key.startswith(DOMAIN + "/"):
        return Problem(where, f"{key} is canary-routers' own bookkeeping and cannot be set")
    if key == CLASS_ANNOTATION:
        return Problem(where, f"{key} is copied from the stable Ingress (the class must match)")
    if not key.startswith(prefix + "/"):
        return None
    name = key[len(prefix) + 1 :]
    if name in _OWNED:
        return Problem(where, f"{key} cannot be set here: {_OWNED[name]}")
    charset = REGEX if name == CANARY_BY_HEADER_PATTERN else BASIC
    if name in (*HEADER_KEYS, CANARY_BY_COOKIE):
        bad = _bad(value, charset)
        if bad or not value:
            return Problem(
                where,
                f"value {value!r} would be dropped by ingress-nginx's annotation validation"
                + (f" (characters {bad!r} are not accepted)" if bad else " (empty)"),
            )
    return None


@dataclass(frozen=True)
class HeaderCondition:
    """``canary-by-header`` plus exactly one of ``-value`` (exact) and ``-pattern`` (regex)."""

    name: str
    value: str | None = None
    pattern: str | None = None

    def annotations(self) -> dict[str, str]:
        out = {CANARY_BY_HEADER: self.name}
        if self.value is not None:
            out[CANARY_BY_HEADER_VALUE] = self.value
        if self.pattern is not None:
            out[CANARY_BY_HEADER_PATTERN] = self.pattern
        return out


_INSTEAD = (
    "ingress-nginx can route one header condition (exact, prefix or regex) to the canary, plus "
    "a cookie (canaryByCookie); for more, use the gatewayapi or istio plugin"
)


def header_condition(plugin: str, route: HeaderRoute, *, allow_underscore: bool) -> HeaderCondition:
    """The one header condition a canary Ingress can express, or UnsupportedError saying why."""
    instruction = f"setHeaderRoute {route.name!r}"

    def refuse(reason: str, hint: str = _INSTEAD) -> UnsupportedError:
        return UnsupportedError(plugin, instruction, reason, hint=hint)

    if len(route.matches) != 1:
        raise refuse(
            f"{len(route.matches)} ORed matches given; a canary Ingress has one header condition",
            "express the alternatives as one regex on one header (e.g. 'alpha|beta')",
        )
    match: RequestMatch = route.matches[0]
    others = [
        what
        for what, present in (
            ("path", match.path is not None),
            ("method", match.method is not None),
            ("queryParams", bool(match.query_params)),
        )
        if present
    ]
    if others:
        raise refuse(
            f"matches[0]: {', '.join(others)} conditions cannot be expressed: the canary Ingress "
            "shares the stable Ingress's paths and ingress-nginx decides by header, cookie and "
            "weight only",
            "drop the condition, or give those paths their own stable Ingress; " + _INSTEAD,
        )
    if len(match.headers) != 1:
        raise refuse(
            f"matches[0]: {len(match.headers)} ANDed header conditions given; ingress-nginx "
            "reads one header (canary-by-header)"
        )
    header = match.headers[0]
    allowed = _HEADER_NAME | ({"_"} if allow_underscore else frozenset())
    bad = _bad(header.name, allowed)
    if bad:
        hint = (
            "set allowUnderscoreHeaders: true if the controller runs with "
            'enable-underscores-in-headers: "true", or rename the header'
            if bad == "_"
            else "use a header name made of letters, digits and '-'"
        )
        raise refuse(
            f"header name {header.name!r} contains {bad!r}: nginx drops such request headers "
            "(ignore-invalid-headers), so the route would never match",
            hint,
        )
    if header.kind == "exact" and not _bad(header.value, BASIC):
        return HeaderCondition(header.name, value=header.value)
    pattern = matching.to_regex(header.kind, header.value)
    bad = _bad(pattern, REGEX)
    if bad:
        raise refuse(
            f"header {header.kind} value {header.value!r} cannot be expressed: "
            f"canary-by-header-pattern {pattern!r} contains {bad!r}, which ingress-nginx's "
            "annotation validation rejects (it would silently drop the route)",
            "use only letters, digits, -._~/: and the regex syntax ^$[](){}*+?|&=\\; spaces, "
            "commas (so {m,n} ranges) and quotes are refused",
        )
    return HeaderCondition(header.name, pattern=pattern)
