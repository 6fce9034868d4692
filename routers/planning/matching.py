"""Match translation helpers: the one place where literal values become regular expressions.

Our ``regex`` means a whole-value RE2 match (Envoy/Istio semantics). Targets whose engine
matches anywhere in the value (ingress-nginx's PCRE, some Gateway API implementations) must use
:func:`anchored`. A prefix never becomes an unescaped ``prefix.*``: ``v1.2`` must not match
``v1x2``.
"""

from __future__ import annotations

from routers.model.matches import MatchType

__all__ = ["anchored", "escape_regex", "exact_regex", "prefix_regex", "to_regex"]

# Metacharacters of RE2, PCRE and Go's regexp. Everything else is literal in all three.
_META = frozenset("\\.+*?()|[]{}^$")


def escape_regex(text: str) -> str:
    return "".join("\\" + c if c in _META else c for c in text)


def prefix_regex(prefix: str) -> str:
    """Matches values that start with ``prefix``, under full-match and search semantics alike."""
    return f"^{escape_regex(prefix)}.*"


def exact_regex(value: str) -> str:
    return f"^{escape_regex(value)}$"


def anchored(regex: str) -> str:
    """Whole-value semantics for engines that search (``^(?:re)$``)."""
    return f"^(?:{regex})$"


def to_regex(kind: MatchType, value: str) -> str:
    """Any string match as a regex with whole-value semantics that also works unanchored."""
    if kind == "exact":
        return exact_regex(value)
    if kind == "prefix":
        return prefix_regex(value)
    return anchored(value)
