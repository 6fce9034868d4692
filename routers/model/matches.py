"""Request matches: a list of matches is ORed; the conditions inside one match are ANDed.

This is the common denominator of Istio ``HTTPMatchRequest``, Gateway API ``HTTPRouteMatch``,
SMI ``HTTPRouteGroup`` and ingress-nginx's canary-by-header; each plugin declares which parts it
can express and refuses the rest.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from routers.model._base import Model
from routers.model._validators import HeaderName, MatchValue, PathValue, Regex

__all__ = [
    "HeaderMatch",
    "MatchType",
    "Method",
    "PathMatch",
    "QueryParamMatch",
    "RequestMatch",
]

MatchType = Literal["exact", "prefix", "regex"]


class Method(StrEnum):
    """HTTP methods every target can express (Gateway API's enum)."""

    GET = "GET"
    HEAD = "HEAD"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"
    CONNECT = "CONNECT"
    OPTIONS = "OPTIONS"
    TRACE = "TRACE"
    PATCH = "PATCH"


class _OneOf(Model):
    """Exactly one of ``exact`` / ``prefix`` / ``regex``."""

    exact: MatchValue | None = None
    prefix: MatchValue | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _OneOf:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of exact, prefix or regex must be set"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> MatchType:
        if self.exact is not None:
            return "exact"
        if self.prefix is not None:
            return "prefix"
        return "regex"

    @property
    def value(self) -> str:
        v = self.exact if self.exact is not None else self.prefix
        if v is None:
            v = self.regex
        assert v is not None
        return v


class HeaderMatch(_OneOf):
    """A request header condition; names compare case-insensitively, values case-sensitively."""

    name: HeaderName


class QueryParamMatch(_OneOf):
    name: HeaderName


class PathMatch(_OneOf):
    exact: PathValue | None = None
    prefix: PathValue | None = None


Headers = Annotated[tuple[HeaderMatch, ...], Field(strict=False, max_length=16)]
QueryParams = Annotated[tuple[QueryParamMatch, ...], Field(strict=False, max_length=16)]


class RequestMatch(Model):
    """One match: every condition given must hold."""

    headers: Headers = ()
    path: PathMatch | None = None
    method: Method | None = Field(default=None, strict=False)
    query_params: QueryParams = ()

    @model_validator(mode="after")
    def _non_empty_and_unique(self) -> RequestMatch:
        if not self.headers and self.path is None and self.method is None and not self.query_params:
            raise ValueError(
                "a match needs at least one condition (headers, path, method or queryParams); "
                "an empty match would capture all traffic"
            )
        for field, items in (("headers", self.headers), ("queryParams", self.query_params)):
            seen: set[str] = set()
            for item in items:
                key = item.name.lower() if field == "headers" else item.name
                if key in seen:
                    raise ValueError(f"{field}: {item.name!r} is listed twice")
                seen.add(key)
        return self

    @property
    def conditions(self) -> int:
        """Number of ANDed conditions, used by precedence-aware targets and limits."""
        return (
            len(self.headers)
            + len(self.query_params)
            + (self.path is not None)
            + (self.method is not None)
        )
