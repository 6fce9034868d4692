"""Abstract request matches -> Istio ``HTTPMatchRequest``, ANDed with the primary route's own.

Istio's ``match[]`` is ORed and the conditions inside one entry are ANDed, exactly like our
``RequestMatch`` list. Istio has native ``exact`` / ``prefix`` / ``regex`` (RE2, whole value)
for uri, method, headers and query parameters: no translation to regex is ever needed. One
difference: our path ``prefix`` is element-wise (``/api`` covers ``/api`` and ``/api/x``, not
``/apix``, as in Gateway API) while Istio's uri ``prefix`` compares characters, so a path prefix
``P`` becomes two ORed entries, ``exact P`` and ``prefix P/``.

A managed route must never capture traffic its primary route did not serve (a VirtualService
serving ``/api`` among other paths), so its matches are the cross product of the primary
route's ``match[]`` and ours. Two conditions on the same field are merged into the narrower one
when that is decidable (``prefix /api`` and ``exact /api/v2`` -> ``exact /api/v2``); disjoint
pairs are dropped; undecidable pairs (two different regexes) are refused.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import re2

from routers.model import RequestMatch
from routers.model.matches import MatchType

__all__ = ["Disjoint", "Undecidable", "combine", "cross_product", "to_istio"]

StringMatch = dict[str, str]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class Undecidable(Exception):
    """Two conditions on one field whose intersection Istio cannot express."""


class Disjoint(Exception):
    """Two conditions on one field that no request satisfies together."""


def _string_match(kind: MatchType, value: str) -> StringMatch:
    return {kind: value}


def _uris(kind: MatchType, value: str) -> list[StringMatch]:
    """Istio uri conditions, ORed, that match exactly the paths our ``kind``/``value`` does."""
    if kind != "prefix":
        return [_string_match(kind, value)]
    base = value.rstrip("/")  # a trailing '/' is ignored, as element-wise matching does
    if not base:
        return [{"prefix": "/"}]
    return [{"exact": base}, {"prefix": base + "/"}]


def to_istio(match: RequestMatch) -> list[dict[str, Any]]:
    """One abstract match as ORed ``HTTPMatchRequest`` entries (two for an element-wise path
    prefix, else one; header names lower-cased, as Istio asks)."""
    out: dict[str, Any] = {}
    if match.method is not None:
        out["method"] = {"exact": match.method.value}
    if match.headers:
        out["headers"] = {h.name.lower(): _string_match(h.kind, h.value) for h in match.headers}
    if match.query_params:
        out["queryParams"] = {q.name: _string_match(q.kind, q.value) for q in match.query_params}
    if match.path is None:
        return [out]
    return [{"uri": uri, **copy.deepcopy(out)} for uri in _uris(match.path.kind, match.path.value)]


def _kind(m: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, value) of a live StringMatch; None for ``{}`` (presence only)."""
    for kind in ("exact", "prefix", "regex"):
        value = m.get(kind)
        if isinstance(value, str):
            return kind, value
    return None


def _full(regex: str, value: str) -> bool:
    try:
        return re2.fullmatch(regex, value, options=_RE2_OPTIONS) is not None
    except re2.error as exc:
        raise Undecidable(f"cannot evaluate regex {regex!r}") from exc


def combine(theirs: Mapping[str, Any], ours: StringMatch, *, uri: bool = False) -> StringMatch:
    """The StringMatch equivalent to both; raises Disjoint or Undecidable."""
    t = _kind(theirs)
    o = _kind(ours)
    assert o is not None
    if t is None:
        if any(k for k in theirs if k not in ("exact", "prefix", "regex")):
            raise Undecidable(f"unknown string match {dict(theirs)!r}")
        return dict(ours)  # presence only: ours implies it
    (tk, tv), (ok, ov) = t, o
    if (tk, tv) == (ok, ov):
        return dict(ours)
    if uri and tk == "prefix" and tv == "/":
        return dict(ours)  # every request path starts with '/'
    if tk == "exact":
        if ok == "exact":
            raise Disjoint  # equal values returned above
        if (ok == "prefix" and tv.startswith(ov)) or (ok == "regex" and _full(ov, tv)):
            return {"exact": tv}
        raise Disjoint
    if ok == "exact":
        if tk == "prefix":
            if ov.startswith(tv):
                return dict(ours)
            raise Disjoint
        if _full(tv, ov):
            return dict(ours)
        raise Disjoint
    if tk == "prefix" and ok == "prefix":
        if ov.startswith(tv):
            return dict(ours)
        if tv.startswith(ov):
            return {"prefix": tv}
        raise Disjoint
    raise Undecidable(
        f"cannot express both {tk} {tv!r} (primary route) and {ok} {ov!r} in one condition"
    )


def _merge_map(
    theirs: Mapping[str, Any], ours: Mapping[str, StringMatch], *, fold_case: bool, field: str
) -> dict[str, Any]:
    out = copy.deepcopy(dict(theirs))
    index = {(k.lower() if fold_case else k): k for k in out}
    for name, cond in ours.items():
        key = name.lower() if fold_case else name
        if key in index:
            existing = index[key]
            current = out[existing]
            if not isinstance(current, Mapping):
                raise Undecidable(f"{field}.{existing} is not a string match")
            try:
                out[existing] = combine(current, cond)
            except Undecidable as exc:
                raise Undecidable(f"{field}.{existing}: {exc}") from None
        else:
            out[name] = dict(cond)
    return out


def merge(
    primary: Mapping[str, Any], ours: Mapping[str, Any], *, fixed_uri: bool = False
) -> dict[str, Any]:
    """AND one primary ``HTTPMatchRequest`` (kept whole: gateways, port, withoutHeaders...) with
    one of ours. ``fixed_uri``: the primary route rewrites ``rewrite.uri``, which replaces the
    part of the path its uri condition matched, so that condition must not change."""
    out = copy.deepcopy(dict(primary))
    if "uri" in ours:
        kind = _kind(ours["uri"])
        if out.get("ignoreUriCase") and kind is not None and kind[0] != "regex":
            raise Undecidable(
                "the primary route matches the uri case-insensitively (ignoreUriCase); "
                "a case-sensitive path condition cannot be added to it"
            )
        if isinstance(out.get("uri"), Mapping):
            try:
                out["uri"] = combine(out["uri"], ours["uri"], uri=True)
            except Undecidable as exc:
                raise Undecidable(f"uri: {exc}") from None
        else:
            out["uri"] = dict(ours["uri"])
        if fixed_uri and out["uri"] != primary.get("uri"):
            raise Undecidable(
                "the primary route rewrites the uri (rewrite.uri replaces the matched path or "
                "prefix), so a narrower path condition would change the path sent upstream"
            )
    if "method" in ours:
        if isinstance(out.get("method"), Mapping):
            try:
                out["method"] = combine(out["method"], ours["method"])
            except Undecidable as exc:
                raise Undecidable(f"method: {exc}") from None
        else:
            out["method"] = dict(ours["method"])
    for field, fold in (("headers", True), ("queryParams", False)):
        if field in ours:
            theirs = out.get(field)
            out[field] = _merge_map(
                theirs if isinstance(theirs, Mapping) else {},
                ours[field],
                fold_case=fold,
                field=field,
            )
    return out


def cross_product(
    primary: Sequence[Mapping[str, Any]] | None,
    ours: Sequence[RequestMatch],
    *,
    fixed_uri: bool = False,
) -> list[dict[str, Any]]:
    """Every (primary match AND our match) pair that can match a request.

    Raises Undecidable when a pair cannot be expressed, Disjoint when no pair can match at all
    (a route without matches would capture everything, so that is never emitted).
    """
    translated: list[dict[str, Any]] = []
    for entry in (e for m in ours for e in to_istio(m)):
        if entry not in translated:
            translated.append(entry)
    if not primary:
        primary = [{}]  # matches everything: ANDing keeps ours (and checks fixed_uri)
    out: list[dict[str, Any]] = []
    for p in primary:
        for o in translated:
            try:
                merged = merge(p, o, fixed_uri=fixed_uri)
            except Disjoint:
                continue
            if merged not in out:
                out.append(merged)
    if not out:
        raise Disjoint
    return out
