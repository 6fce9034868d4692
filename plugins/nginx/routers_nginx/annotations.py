"""ingress-nginx annotation names, the values and annotations we may write, header routes.

Values. ingress-nginx does not reject a canary annotation whose value fails its validator: it
logs a warning and resets the field (``internal/ingress/annotations/canary``). A dropped
``canary-by-header-value`` silently turns a header route into the ``always``/``never`` form. And
a value with ``;``, ``{``, ``}``, a quote or a newline can add nginx configuration: the
injection family of CVE-2021-25742 and CVE-2025-1974 (IngressNightmare). So every value we write
into an annotation, whether it comes from the traffic state, the config or a live object,
passes :func:`value_problem`: the charset of the annotation's own ingress-nginx validator, or a
safe set for every other annotation.

Annotations. The ones ingress-nginx rates High or Critical risk (every ``*-snippet``,
``auth-url``, ``server-alias``, ...) are refused in config unless ``allowUnsafeAnnotations``
names them; so are values outside the safe sets (:func:`check_static`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from routers.errors import Problem, UnsupportedError
from routers.model import HeaderRoute, RequestMatch
from routers.model._validators import has_control_character
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
    "risk",
    "value_problem",
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

# Value charsets, from ingress-nginx's internal/ingress/annotations/parser/validators.go
# (controller v1.15.1). BasicCharsRegex and IsValidRegex are the validators of the canary and
# mirror annotations; spaces are refused outright (the basic validator strips them before
# checking, then uses the value with them).
BASIC = frozenset(string.ascii_letters + string.digits + "-._~/:")
REGEX = BASIC | frozenset("^$[](){}*+?|&=\\")
# Every other annotation: what the validators of ingress-nginx's Low/Medium-risk annotations
# accept together (BasicChars, ExtendedChars' ", ", URLIsValid's "?&=", NGINXVariable's "$", the
# regex operators, the cipher lists' "!@") minus the characters of the annotation-value-word-
# blocklist the configmap docs suggest ({ } ' "), the backslash, ';' and '#'. Nothing in it
# can end an nginx directive, open a block or start a string or a comment.
SAFE = BASIC | frozenset(", ?&=$^[]()*+|!@")
# Cookie names: RFC 6265 token characters that BasicChars also accepts.
_COOKIE = frozenset(string.ascii_letters + string.digits + "-._~")
# nginx's ignore_invalid_headers (on by default) drops request headers whose names hold
# anything but letters, digits and '-' (and '_' with enable-underscores-in-headers).
_HEADER_NAME = frozenset(string.ascii_letters + string.digits + "-")

_BASIC_NAMES = (
    CANARY,
    CANARY_WEIGHT,
    CANARY_WEIGHT_TOTAL,
    CANARY_BY_HEADER,
    CANARY_BY_HEADER_VALUE,
    CANARY_BY_COOKIE,
)
_CHARSETS: dict[str, tuple[frozenset[str], str]] = {
    **dict.fromkeys(
        _BASIC_NAMES, (BASIC, "ingress-nginx's BasicChars: letters, digits and -._~/:")
    ),
    CANARY_BY_HEADER_PATTERN: (
        REGEX,
        "ingress-nginx's IsValidRegex: BasicChars plus ^$[](){}*+?|&=\\",
    ),
    # Rendered into nginx.conf (proxy_pass, proxy_set_header): IsValidRegex without { } \\.
    **dict.fromkeys(
        (MIRROR_TARGET, MIRROR_HOST),
        (REGEX - frozenset("{}\\"), "letters, digits and -._~/:^$[]()*+?|&="),
    ),
}
_SAFE_DESCRIPTION = "the safe set: letters, digits, spaces and -._~/:,?&=$^[]()*+|!@"

# docs/user-guide/nginx-configuration/annotations-risk.md (controller v1.15.1): the annotations
# rated Critical (not validated at all: raw nginx or ModSecurity configuration) and High (URLs,
# regexes or nginx variables rendered into the configuration). The admission webhook refuses
# every key ending in "-snippet", whatever its prefix, unless allow-snippet-annotations is set.
CRITICAL = frozenset(
    {
        "auth-snippet",
        "configuration-snippet",
        "modsecurity-snippet",
        "server-snippet",
        "stream-snippet",
    }
)
HIGH = frozenset(
    {
        "auth-signin",
        "auth-tls-error-page",
        "auth-tls-match-cn",
        "auth-url",
        "mirror-host",
        "mirror-target",
        "modsecurity-transaction-id",
        "proxy-ssl-name",
        "server-alias",
        "upstream-hash-by",
    }
)

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


def _name(key: str, prefix: str) -> str | None:
    """The annotation's name when ingress-nginx reads it (``<prefix>/<name>``), else None."""
    return key[len(prefix) + 1 :] if key.startswith(prefix + "/") else None


def value_problem(
    key: str, value: str, prefix: str, *, blocklist: Sequence[str] = (), unsafe: bool = False
) -> str | None:
    """Why ``value`` must not be written to annotation ``key``, or None.

    The one check every annotation value we write passes: state, config and live-derived alike.
    ``blocklist`` mirrors the controller's ``annotation-value-word-blocklist`` (its admission
    webhook refuses the whole Ingress when a value under the prefix contains a listed word);
    ``unsafe`` (allowUnsafeAnnotations) leaves only that check.
    """
    name = _name(key, prefix)
    if name is not None:
        for word in blocklist:
            if word in value:
                return (
                    f"value {value!r} contains {word!r}, listed in annotationValueWordBlocklist "
                    "(the controller's annotation-value-word-blocklist refuses the whole Ingress)"
                )
    if unsafe:
        return None
    charset, description = (
        _CHARSETS.get(name, (SAFE, _SAFE_DESCRIPTION)) if name else (SAFE, _SAFE_DESCRIPTION)
    )
    if has_control_character(value):
        return f"value {value!r} contains a control character (newline, tab, ...)"
    bad = _bad(value, charset)
    if bad:
        return f"value {value!r} contains {bad!r}, outside {description}"
    if name is not None and not value:
        return "empty value (ingress-nginx treats it as invalid)"
    if value != value.strip():
        return f"value {value!r} has leading or trailing spaces"
    return None


def risk(key: str, prefix: str) -> str | None:
    """ingress-nginx's risk level of annotation ``key`` when High or Critical, else None."""
    name = _name(key, prefix)
    if key.endswith(("-snippet", "-snippets")) or name in CRITICAL:
        return "Critical"
    return "High" if name in HIGH else None


def check_cookie_name(value: str) -> None:
    if not value or _bad(value, _COOKIE):
        raise ValueError(
            f"{value!r} is not a cookie name ingress-nginx accepts (letters, digits and -._~)"
        )


_UNSAFE_HINT = (
    "list the key in allowUnsafeAnnotations to pass it through verbatim, after checking that "
    "whoever can edit this config may also write nginx configuration"
)


def check_static(
    key: str,
    value: str,
    prefix: str,
    where: str,
    *,
    allow_unsafe: bool = False,
    blocklist: Sequence[str] = (),
) -> Problem | None:
    """Problems of one config-supplied annotation on the canary Ingress.

    ``allow_unsafe`` (the key is in ``allowUnsafeAnnotations``) lifts the risk and safe-set
    checks, never the rules of our own keys, the validators of the canary routing keys or the
    word blocklist.
    """
    if key.startswith(DOMAIN + "/"):
        return Problem(where, f"{key} is canary-routers' own bookkeeping and cannot be set")
    if key == CLASS_ANNOTATION:
        return Problem(where, f"{key} is copied from the stable Ingress (the class must match)")
    name = _name(key, prefix)
    if name in _OWNED:
        return Problem(where, f"{key} cannot be set here: {_OWNED[name]}")
    if name in ROUTING_KEYS:
        problem = value_problem(key, value, prefix, blocklist=blocklist)
        if problem is not None:
            return Problem(where, f"{problem}: ingress-nginx's annotation validation would drop it")
        return None
    if allow_unsafe:
        problem = value_problem(key, value, prefix, blocklist=blocklist, unsafe=True)
        return Problem(where, problem) if problem is not None else None
    level = risk(key, prefix)
    if level is not None:
        return Problem(
            where,
            f"{key} is a {level}-risk annotation in ingress-nginx (it puts raw configuration, "
            "URLs or nginx variables into nginx.conf: the injection path of CVE-2025-1974, "
            f"IngressNightmare, and CVE-2021-25742); refused: {_UNSAFE_HINT}",
        )
    problem = value_problem(key, value, prefix, blocklist=blocklist)
    if problem is not None:
        return Problem(
            where,
            f"{problem}: such values can add nginx configuration (the CVE-2025-1974 / "
            f"CVE-2021-25742 injection family); refused: {_UNSAFE_HINT}",
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
