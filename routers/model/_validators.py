"""Value rules shared by the input models: one place for each syntax we accept."""

from __future__ import annotations

import re
from typing import Annotated

import re2
from pydantic import AfterValidator, Field

# RFC 7230 token: what Istio's webhook and Gateway API's HeaderName pattern accept.
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
# DNS-1123 label: route names become Istio route names, Gateway API rule names, annotation keys.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# DNS-1123 subdomain: Kubernetes object names (Services, VirtualServices, ...).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Printable ASCII with single inner spaces/tabs: Gateway API's (experimental) header value
# pattern. It also keeps CR/LF/NUL out, so a value can never split a header or a config line.
_FIELD_VALUE = re.compile(r"^[!-~]+([\t ]?[!-~]+)*$")
# Owner identity: what a ledger entry is keyed by (``team-a/checkout``, ``Rollout shop/web``).
_OWNER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._:/ -]*[A-Za-z0-9])?$")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(
            f"{value!r} is not a valid header name (RFC 7230 token: letters, digits and "
            "!#$%&'*+-.^_`|~; no spaces, colons or control characters)"
        )
    return value


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending with an alphanumeric, at most 63 characters)"
        )
    return value


def _object_name(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name (DNS-1123 subdomain)")
    return value


def _owner(value: str) -> str:
    if not _OWNER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid owner (letters, digits and . _ : / - or single inner "
            "spaces; starting and ending with a letter or digit)"
        )
    return value


def _field_value(value: str) -> str:
    if not _FIELD_VALUE.match(value):
        raise ValueError(
            f"{value!r} is not a valid match value (printable ASCII; no leading/trailing "
            "whitespace, no control characters such as newline)"
        )
    return value


def check_re2(pattern: str) -> str:
    """Reject patterns Envoy/Go gateways would refuse (backreferences, lookaround, ...)."""
    if "\n" in pattern or "\r" in pattern or "\x00" in pattern:
        raise ValueError("regex must not contain newline or NUL characters")
    try:
        re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"{pattern!r} is not a valid RE2 regular expression: {detail}") from None
    return pattern


def _path_value(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"path {value!r} must start with '/'")
    return _field_value(value)


HeaderName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_token)]
RouteName = Annotated[str, Field(min_length=1), AfterValidator(_dns_label)]
ObjectName = Annotated[str, Field(min_length=1), AfterValidator(_object_name)]
MatchValue = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_field_value)]
PathValue = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_path_value)]
OwnerName = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_owner)]
Regex = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(check_re2)]

# Kubernetes labels: a key is ``[prefix/]name`` (prefix a DNS-1123 subdomain), a value a name or
# empty. Neither can hold ``,``, ``=``, ``!``, parentheses or spaces, which keeps a label selector
# query unambiguous.
_LABEL_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _label_key(value: str) -> str:
    prefix, slash, name = value.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _LABEL_PART.match(name)
        or (slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
    ):
        raise ValueError(f"{value!r} is not a valid label key ([prefix/]name)")
    return value


def _label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_PART.match(value)):
        raise ValueError(
            f"{value!r} is not a valid label value (at most 63 letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit)"
        )
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
