"""Value rules shared by the input models and the plugins: one place for each syntax we accept.

Every rule is a *full* match: patterns carry no ``^``/``$`` anchors and are applied with
``fullmatch`` (or as a charset difference). ``re.match`` with a ``$``-anchored pattern accepts
a trailing newline (``$`` also matches before a final ``\\n``), which let ``"web-canary\\n"``
through as a Service name and onwards into objects and annotations. pydantic's ``pattern=`` is
not used either: its Rust engine anchors ``$`` at the very end, but a compiled ``re.Pattern`` or
``regex_engine="python-re"`` silently switches to Python's semantics
(``tests/unit/test_validators.py`` pins both behaviours).

Plugins import the annotated types (``ServiceName``, ``Namespace``, ``LabelKey``, ...) or the
``is_*`` predicates from here instead of keeping patterns of their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

import re2
from pydantic import AfterValidator, Field

__all__ = [
    "ConfigMapKey",
    "DnsSubdomain",
    "FreeName",
    "HeaderName",
    "LabelKey",
    "LabelValue",
    "MatchValue",
    "Namespace",
    "ObjectName",
    "OwnerName",
    "PathValue",
    "PodTemplateHash",
    "Regex",
    "ReleaseVersion",
    "RouteName",
    "ServiceName",
    "Uid",
    "check_re2",
    "has_control_character",
    "is_dns_label",
    "is_dns_subdomain",
    "is_field_value",
    "is_host_port",
    "is_label_value",
    "is_path_segment_name",
    "is_qualified_key",
]

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# RFC 7230 token: what Istio's webhook and Gateway API's HeaderName pattern accept.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
# DNS-1123 label: route names, namespaces, Istio subset names (at most 63 characters).
_DNS_LABEL = re.compile(_LABEL)
# DNS-1035 label: Service names (a letter first, so `<name>.<namespace>` is never ambiguous).
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# DNS-1123 subdomain: most Kubernetes object names, annotation/label key prefixes, domains.
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
# Kubernetes qualified name (label/annotation key without its prefix) and label value.
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# Printable ASCII with single inner spaces/tabs: Gateway API's (experimental) header value
# pattern. It also keeps CR/LF/NUL out, so a value can never split a header or a config line.
_FIELD_VALUE = re.compile(r"[!-~]+([\t ]?[!-~]+)*")
# Owner identity: what a ledger entry is keyed by (``team-a/checkout``, ``Rollout shop/web``).
_OWNER = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._:/ -]*[A-Za-z0-9])?")
# A release tag such as ``v1.2.1`` or ``v1.3.0-rc.1``.
_RELEASE = re.compile(r"v\d+\.\d+(\.\d+)?([-+][0-9A-Za-z.-]+)?")
# ConfigMap/Secret data key (IsConfigMapKey).
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_PORT = re.compile(r"[0-9]{1,5}")
# An object's uid: a UUID from the API server; any printable ASCII word is accepted (tests and
# offline files write ``uid-1``), never spaces or control characters.
_UID = re.compile(r"[!-~]+")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def has_control_character(value: str) -> bool:
    """C0 controls, DEL and the C1/Unicode line separators: what can end a line somewhere."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in value)


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_path_segment_name(value: str) -> bool:
    """The loosest object name the API server accepts for any kind (``path.IsValidPathSegmentName``
    and the 253 limit), without the control characters some kinds would let through."""
    return (
        0 < len(value) <= 253
        and value not in (".", "..")
        and not any(c in "/%" for c in value)
        and not has_control_character(value)
    )


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and _QUALIFIED.fullmatch(value) is not None)


def is_qualified_key(value: str) -> bool:
    """``[<dns-subdomain>/]<name>``: the syntax of label and annotation keys."""
    prefix, slash, name = value.rpartition("/")
    return (
        0 < len(name) <= 63
        and _QUALIFIED.fullmatch(name) is not None
        and (not slash or is_dns_subdomain(prefix))
    )


def is_host_port(value: str) -> bool:
    """A lowercase DNS name with an optional ``:port`` (1-65535)."""
    host, colon, port = value.partition(":")
    if colon and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        return False
    return is_dns_subdomain(host)


def _rule(check: Callable[[str], bool], message: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not check(value):
            raise ValueError(f"{value!r} is not {message}")
        return value

    return AfterValidator(validate)


def is_field_value(value: str) -> bool:
    """Printable ASCII with single inner spaces/tabs (Gateway API's header value pattern)."""
    return _FIELD_VALUE.fullmatch(value) is not None


def check_re2(pattern: str) -> str:
    """Reject patterns Envoy/Go gateways would refuse (backreferences, lookaround, ...)."""
    if has_control_character(pattern):
        raise ValueError(
            "regex must not contain control characters such as newline or NUL (write \\n, \\t)"
        )
    try:
        re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"{pattern!r} is not a valid RE2 regular expression: {detail}") from None
    return pattern


def _path_value(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must start with '/'")
    return value


HeaderName = Annotated[
    str,
    Field(min_length=1, max_length=256),
    _rule(
        lambda v: _TOKEN.fullmatch(v) is not None,
        "a valid header name (RFC 7230 token: letters, digits and !#$%&'*+-.^_`|~; no spaces, "
        "colons or control characters)",
    ),
]
RouteName = Annotated[
    str,
    Field(min_length=1),
    _rule(
        is_dns_label,
        "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with an "
        "alphanumeric, at most 63 characters)",
    ),
]
ObjectName = Annotated[
    str,
    Field(min_length=1),
    _rule(is_dns_subdomain, "a valid Kubernetes object name (DNS-1123 subdomain)"),
]
ServiceName = Annotated[
    str,
    Field(min_length=1),
    _rule(
        lambda v: len(v) <= 63 and _DNS_1035.fullmatch(v) is not None,
        "a valid Service name (DNS-1035 label: lowercase letters, digits and '-', starting "
        "with a letter, at most 63 characters)",
    ),
]
Namespace = Annotated[
    str,
    Field(min_length=1),
    _rule(is_dns_label, "a valid namespace (DNS-1123 label, at most 63 characters)"),
]
DnsSubdomain = Annotated[
    str,
    Field(min_length=1),
    _rule(is_dns_subdomain, "a DNS-1123 subdomain (lowercase, at most 253 characters)"),
]
LabelKey = Annotated[
    str,
    Field(min_length=1),
    _rule(is_qualified_key, "a valid label key ([<dns-subdomain>/]<name>)"),
]
# Kubernetes labels: neither a key nor a value can hold ``,``, ``=``, ``!``, parentheses or
# spaces, which keeps a label selector query unambiguous. A label value may be empty.
LabelValue = Annotated[
    str,
    _rule(
        is_label_value,
        "a valid label value (at most 63 letters, digits, '-', '_' and '.', starting and "
        "ending with a letter or digit, or empty)",
    ),
]
PodTemplateHash = Annotated[LabelValue, Field(min_length=1)]
"""A label value that names something (a ReplicaSet's pod-template hash): never empty."""
ConfigMapKey = Annotated[
    str,
    Field(min_length=1, max_length=253),
    _rule(
        lambda v: _CONFIGMAP_KEY.fullmatch(v) is not None,
        "a valid ConfigMap key (letters, digits, '-', '_' and '.')",
    ),
]
ReleaseVersion = Annotated[
    str,
    Field(min_length=1, max_length=64),
    _rule(
        lambda v: _RELEASE.fullmatch(v) is not None,
        "a release version such as v1.2.1 or v1.3.0-rc.1",
    ),
]
MatchValue = Annotated[
    str,
    Field(min_length=1, max_length=4096),
    _rule(
        is_field_value,
        "a valid match value (printable ASCII; no leading/trailing whitespace, no control "
        "characters such as newline)",
    ),
]
PathValue = Annotated[
    str,
    Field(min_length=1, max_length=1024),
    AfterValidator(_path_value),
    _rule(
        is_field_value,
        "a valid path (printable ASCII; no leading/trailing whitespace, no control characters "
        "such as newline)",
    ),
]
OwnerName = Annotated[
    str,
    Field(min_length=1, max_length=253),
    _rule(
        lambda v: _OWNER.fullmatch(v) is not None,
        "a valid owner (letters, digits and . _ : / - or single inner spaces; starting and "
        "ending with a letter or digit)",
    ),
]
FreeName = Annotated[
    str,
    Field(min_length=1, max_length=256),
    _rule(
        is_field_value,
        "a valid name (printable ASCII; no leading/trailing whitespace, no control characters "
        "such as newline)",
    ),
]
"""A name a target leaves free that we only refer to (an Istio http route's ``name``)."""
Uid = Annotated[
    str,
    Field(min_length=1, max_length=128),
    _rule(
        lambda v: _UID.fullmatch(v) is not None,
        "a valid uid (printable ASCII without spaces, as the API server's UUIDs)",
    ),
]
Regex = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(check_re2)]
