"""Regex evaluation for data-plane evaluators (public: plugins evaluate their targets with it).

RE2 (google-re2), because Envoy, Go and our own model use RE2 syntax. Two semantics exist in the
targets and both are needed: *whole value* (Envoy/Istio ``regex``, our model) and *search*
(Go's ``MatchString``, PCRE in ingress-nginx). An invalid pattern never matches: a data plane
that rejects the pattern does not route by it either, and the caller records why.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import re2

__all__ = ["Dialect", "regex_matches", "valid_regex"]

Dialect = Literal["full", "search", "start"]
"""``full``: the whole value; ``search``: anywhere; ``start``: anchored at the start only."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re2._Regexp[str] | None:
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error:
        return None


def valid_regex(pattern: str) -> bool:
    return _compile(pattern) is not None


def regex_matches(pattern: str, value: str, dialect: Dialect = "full") -> bool:
    compiled = _compile(pattern)
    if compiled is None:
        return False
    if dialect == "full":
        return compiled.fullmatch(value) is not None
    if dialect == "start":
        return compiled.match(value) is not None
    return compiled.search(value) is not None
