"""The equivalence machinery: do a target's objects route each request as the state means?

Shared by ``routers explain --request`` and the contract suite's cross-target property, and
target-agnostic: the target's own rules come from its plugin's evaluator (a ``route`` function,
objects + request -> one :class:`~routers.contract.Routed` per scope). Three object sets are
compared for a request:

* ``before``, the objects after a cleanup, and ``probe``, after a plain 50% split: a scope is
  *managed* for a request when the probe sends some of it to canary;
* ``after``, the objects under test: a managed scope must do what the state means (100% canary
  for a matching header route, the weighted split otherwise, within the target's precision,
  plus the mirror share of a matching mirror route; foreign weighted destinations keep the
  share they had, and the state's weights are shares of all traffic: ``keep_foreign``); any
  other scope must route exactly as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from routers.model import Cleanup, Desired, RequestMatch, TrafficState, WeightScope
from routers.model.matches import HeaderMatch, QueryParamMatch
from routers.planning.objects import LiveObjects
from routers.simulate.meaning import intended, keep_foreign
from routers.simulate.outcome import Outcome, Routed
from routers.simulate.regex import regex_matches
from routers.simulate.request import Request

__all__ = ["Finding", "Meaning", "judge", "path_probes", "requests_for", "shares_within"]

Route = Callable[[LiveObjects, Request], Sequence[Routed]]
Verdict = Literal["as wanted", "DIFFERS", "unchanged", "CHANGED", "ambiguous", "no intent"]


@dataclass(frozen=True)
class Meaning:
    """What the state asks of every target, in the routing config's names."""

    desired: Desired
    stable: str
    canary: str
    managed_order: tuple[str, ...] = ()
    scope: WeightScope = "all"
    """What weights are a share of beside destinations we do not own (``weightScope``)."""

    @property
    def ours(self) -> set[str]:
        out = {self.stable, self.canary}
        if isinstance(self.desired, TrafficState):
            out |= {d.service for d in self.desired.additional_destinations}
        return out

    def outcome(
        self, request: Request, *, routes: bool = True
    ) -> tuple[Outcome | None, str | None]:
        """The intended outcome (``None`` for a cleanup keeping weights) and why targets may
        legitimately differ on this request (``None``: they must not)."""
        desired = self.desired
        if isinstance(desired, Cleanup):
            if not desired.restore_stable:
                return None, None
            desired = TrafficState()
        elif not routes:
            desired = desired.with_changes(header_routes=(), mirror_routes=())
        intent = intended(
            desired,
            request,
            stable=self.stable,
            canary=self.canary,
            managed_order=self.managed_order,
        )
        return intent.outcome, intent.ambiguous


@dataclass(frozen=True)
class Finding:
    scope: str
    request: Request
    got: Outcome
    want: Outcome | None
    managed: bool
    verdict: Verdict

    @property
    def ok(self) -> bool:
        return self.verdict not in ("DIFFERS", "CHANGED")

    @property
    def compared(self) -> bool:
        """A managed scope whose outcome was held to the state's meaning."""
        return self.verdict in ("as wanted", "DIFFERS")

    def __str__(self) -> str:
        want = self.want.describe() if self.want is not None else "(nothing to compare)"
        return (
            f"{self.scope}: {self.request}\n    want: {want}\n    got:  {self.got.describe()}\n"
            f"    ({self.verdict}: "
            + ("the state's meaning" if self.managed else "traffic outside the managed rules")
            + ")"
        )


def shares_within(
    got: Mapping[str, Fraction], want: Mapping[str, Fraction], tolerance: Fraction
) -> bool:
    return all(
        abs(got.get(k, Fraction(0)) - want.get(k, Fraction(0))) <= tolerance
        for k in set(got) | set(want)
    )


def _same(a: Outcome, b: Outcome) -> bool:
    return (dict(a.shares), dict(a.mirrors), a.status) == (
        dict(b.shares),
        dict(b.mirrors),
        b.status,
    )


def judge(
    route: Route,
    request: Request,
    meaning: Meaning,
    *,
    before: LiveObjects,
    probe: LiveObjects,
    after: LiveObjects,
    tolerance: Fraction = Fraction(0),
    max_weight: int | None = None,
) -> list[Finding]:
    """One finding per scope of ``after`` for ``request`` (see the module docstring).

    ``max_weight``: the target's largest weight. Beside weights we do not own, an exact split may
    need larger ones; the target then rounds (and says so), within one unit of it.
    """
    was = {r.scope: r.outcome for r in route(before, request)}
    managed = {r.scope for r in route(probe, request) if r.outcome.share(meaning.canary) > 0}
    out: list[Finding] = []
    for routed in route(after, request):
        got, scope = routed.outcome, routed.scope
        if scope not in managed:
            old = was.get(scope)
            same = old is not None and _same(got, old)
            out.append(Finding(scope, request, got, old, False, "unchanged" if same else "CHANGED"))
            continue
        want, ambiguous = meaning.outcome(request, routes=routed.managed_routes)
        if want is None:
            out.append(Finding(scope, request, got, None, True, "no intent"))
            continue
        meant = keep_foreign(
            want, was.get(scope), meaning.ours, stable=meaning.stable, scope=meaning.scope
        )
        near = tolerance
        if max_weight and set(meant.shares) - set(want.shares):  # others kept a share here
            near = max(tolerance, Fraction(1, max_weight))
        want = meant
        if ambiguous and routed.character_prefixes:
            out.append(Finding(scope, request, got, want, True, "ambiguous"))
            continue
        ok = (
            got.routed
            and shares_within(got.shares, want.shares, near)
            and shares_within(got.mirrors, want.mirrors, Fraction(0))
        )
        out.append(Finding(scope, request, got, want, True, "as wanted" if ok else "DIFFERS"))
    return out


# -- requests ------------------------------------------------------------------------------


def path_probes(paths: Sequence[str], hosts: Sequence[str | None] = (None,)) -> list[Request]:
    """For each path its own request, one just below it (``/p/x``) and one beside it (``/px``,
    where element-wise and character prefixes disagree), per host; for evaluators'
    ``sample_requests``."""
    out: list[Request] = []
    for p in sorted({"/", "/zz-unmatched", *paths}):
        beside = (p.rstrip("/") + "x",) if p.rstrip("/") else ()
        for path in dict.fromkeys((p, p.rstrip("/") + "/x", *beside)):
            for host in hosts:
                out.append(Request(path=path, headers=(("Host", host),) if host else ()))
    return out


# Strings that full-match the regexes the contract suite's generator draws (plus path forms).
REGEX_SAMPLES = ("abc", "beta-42", "beta", "alpha", "v1.23", "/abc", "/beta-42", "/beta", "/v1.23")


def _satisfy(kind: str, value: str, path: bool = False) -> str | None:
    if kind == "exact":
        return value
    if kind == "prefix":
        return value.rstrip("/") + "/sub" if path else value + "-sub"
    return next((s for s in REGEX_SAMPLES if regex_matches(value, s)), None)


def _apply(m: RequestMatch, base: Request) -> Request | None:
    """``base`` changed to satisfy ``m`` (``None`` when a regex has no known sample)."""
    path = base.path
    if m.path is not None:
        got = _satisfy(m.path.kind, m.path.value, path=True)
        if got is None:
            return None
        path = got
    named: list[HeaderMatch | QueryParamMatch] = [*m.headers, *m.query_params]
    pairs = [(c.name, _satisfy(c.kind, c.value)) for c in named]
    if any(v is None for _, v in pairs):
        return None
    values = [(n, str(v)) for n, v in pairs]
    headers = (*base.headers, *values[: len(m.headers)])
    query = (*base.query, *values[len(m.headers) :])
    method = m.method.value if m.method else base.method
    return Request(method, path, headers, base.cookies, query, base.scheme)


def requests_for(state: TrafficState, samples: Sequence[Request]) -> list[Request]:
    """Requests that hit each managed match, miss it narrowly, and combine two routes, built on
    ``samples`` (the evaluator's requests reaching each rule of the objects)."""
    samples = list(samples) or [Request()]
    bases: list[Request] = []
    for s in samples:
        bases.append(s)
        if s.method == "GET":
            bases.append(Request("POST", s.path, s.headers, s.cookies, s.query, s.scheme))
    per_host = list({s.host: s for s in reversed(samples)}.values())[::-1]
    # A match without a path applies to a few plain samples and to every sample pinned to
    # headers or query parameters of its own (a rule the managed one may tie or outrank).
    pinned = [s for s in samples[6:] if s.query or any(k.lower() != "host" for k, _ in s.headers)]
    hits: list[tuple[Request, tuple[tuple[str, str], ...]]] = []
    for route in [*state.header_routes, *state.mirror_routes]:
        for m in route.matches:
            for base in [*samples[:6], *pinned] if m.path is None else per_host:
                hit = _apply(m, base)
                if hit is None:
                    continue
                added = hit.headers[len(base.headers) :]
                hits.append((hit, added))
                if added:  # near misses: a different value, and the names upper-cased
                    keep = hit.headers[: len(base.headers)]
                    (n0, v0), *rest = added
                    bases.append(_with(hit, (*keep, (n0, "zz" + v0), *rest)))
                    bases.append(_with(hit, (*keep, *((n.upper(), v) for n, v in added))))
                if m.method is not None:
                    other = "PUT" if hit.method != "PUT" else "GET"
                    bases.append(
                        Request(other, hit.path, hit.headers, hit.cookies, hit.query, hit.scheme)
                    )
    bases += [h for h, _ in hits]
    for (a, _), (_, b_added) in itertools.combinations(hits, 2):  # overlapping routes
        names = {n.lower() for n, _ in a.headers}
        bases.append(
            _with(a, (*a.headers, *((n, v) for n, v in b_added if n.lower() not in names)))
        )
    return list(dict.fromkeys(bases))


def _with(req: Request, headers: tuple[tuple[str, str], ...]) -> Request:
    return Request(req.method, req.path, headers, req.cookies, req.query, req.scheme)
