"""The controller-facing API: one object per routing config, safe to share between threads.

    router = Router.from_kubeconfig(config)
    router.apply_state(state)                # declarative: same state twice = zero writes
    router.set_weight(20)                    # or Argo Rollouts' verbs, transitions of router.state
    report = router.verify()                 # is it really applied (and ready)?

The verbs transform the router's in-memory state, which a restarted process does not have: a
controller should store its desired state durably (e.g. in its resource's status) and call
``apply_state`` with it on every reconcile.

Give many Routers one :class:`WatchCache` (``Router(config, cache=cache)``) and they read from
memory kept current by list+watch: a steady state sends no request at all, a write's response is
seen by the next step and by ``verify`` at once. Or pass ``live=`` (objects from your own
informer) per call. Either way a stale object costs one conflict and a fresh read, never a lost
write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes.client import ApiClient

from routers.cluster._apply import Outcome, gather_facts, lister, reader, reconcile
from routers.cluster._kube import Kube
from routers.cluster._transport import DEFAULT_TIMEOUTS, Timeouts, Transport
from routers.cluster._watch import WatchCache
from routers.cluster.connect import connect
from routers.contract import ClusterFacts, Observation
from routers.engine import (
    Binding,
    VerifyReport,
    bind,
    gather,
    observe_all,
    plan_all,
    target_refs,
    verify,
)
from routers.model import (
    AdditionalDestination,
    Cleanup,
    Desired,
    RemoveManagedRoutes,
    RequestMatch,
    RoutingConfig,
    SetHeaderRoute,
    SetMirrorRoute,
    SetWeight,
    TrafficState,
)
from routers.planning.objects import JSON, LiveObjects, ObjectRef, resource_version
from routers.planning.plan import Plan
from routers.registry import Registry

__all__ = ["Router"]


class Router:
    def __init__(
        self,
        config: RoutingConfig,
        api_client: ApiClient | None = None,
        *,
        kube: Kube | None = None,
        registry: Registry | None = None,
        state: TrafficState | None = None,
        cache: WatchCache | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        """``timeouts`` bound the requests of a Router made from an ``api_client``; a ``kube``
        or a ``cache`` brings its own transport's."""
        if kube is None:
            if cache is not None:
                kube = cache.kube
            elif api_client is None:
                raise TypeError("Router needs an api_client, a kube or a cache")
            else:
                kube = Kube(Transport(api_client, timeouts=timeouts))
        self.config = config
        self.kube = kube
        self.cache = cache
        self._bindings: list[Binding] = bind(config, registry)
        self._lock = threading.RLock()
        self._facts: ClusterFacts | None = None
        self._state = state or TrafficState(total=config.max_traffic_weight or 100)
        self._seen: dict[ObjectRef, JSON] = {}
        """With a cache: the parsed targets as this Router last read or wrote them (read-only,
        like every object a plan is made from)."""

    @classmethod
    def from_kubeconfig(
        cls,
        config: RoutingConfig,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        **kw: Any,
    ) -> Router:
        """A Router on the cluster :func:`routers.cluster.connect.connect` finds (explicit
        kubeconfig, in-cluster service account, ``~/.kube/config``)."""
        return cls(config, kube=connect(kubeconfig, context, timeouts=timeouts), **kw)

    @property
    def state(self) -> TrafficState:
        """The last desired state this router applied (or was given)."""
        with self._lock:
            return self._state

    def facts(self, *, refresh: bool = False) -> ClusterFacts:
        """Served versions and CRD facts, read once (Routers sharing a cache share them)."""
        with self._lock:
            if self._facts is None or refresh:
                cache = self.cache
                if cache is None:
                    self._facts = gather_facts(self.kube, self._bindings)
                else:
                    key = ("facts", *sorted({n for b in self._bindings for n in b.plugin.crds}))
                    if refresh:
                        cache.forget_shared(key)
                    facts = cache.shared(key, lambda: gather_facts(self.kube, self._bindings))
                    assert isinstance(facts, ClusterFacts)
                    self._facts = facts
            return self._facts

    def _reader(self, *, fresh: bool = False) -> Callable[[ObjectRef], JSON | None]:
        read = reader(self.kube, self.cache, fresh=fresh)
        cache = self.cache
        if cache is None:
            return read
        seen = self._seen

        def remembering(ref: ObjectRef) -> JSON | None:
            # The parsed copy of the version the cache holds, when this Router has it (its own
            # last write's response, or its last read): steady steps parse nothing.
            known = seen.get(ref)
            if not fresh and known is not None and cache.version(ref) == resource_version(known):
                return known
            obj = read(ref)
            if obj is None:
                seen.pop(ref, None)
            else:
                seen[ref] = obj
            return obj

        return remembering

    def _remember(self, outcome: Outcome) -> None:
        if self.cache is not None and not outcome.dry_run:
            for ref, obj in outcome.result.items():
                if obj is None:
                    self._seen.pop(ref, None)
                else:
                    self._seen[ref] = obj

    # -- declarative ----------------------------------------------------------------------------

    def apply_state(
        self,
        state: TrafficState,
        *,
        live: Mapping[ObjectRef, JSON | None] | None = None,
        dry_run: bool = False,
    ) -> Outcome:
        with self._lock:
            outcome = reconcile(
                self.kube,
                self.config,
                state,
                bindings=self._bindings,
                live=live,
                facts=self.facts(),
                dry_run=dry_run,
                cache=self.cache,
                read=self._reader(),
            )
            self._remember(outcome)
            if not dry_run:
                self._state = state
            return outcome

    def cleanup(
        self,
        *,
        restore_stable: bool = True,
        live: Mapping[ObjectRef, JSON | None] | None = None,
        dry_run: bool = False,
    ) -> Outcome:
        with self._lock:
            outcome = reconcile(
                self.kube,
                self.config,
                Cleanup(restore_stable=restore_stable),
                bindings=self._bindings,
                live=live,
                facts=self.facts(),
                dry_run=dry_run,
                cache=self.cache,
                read=self._reader(),
            )
            self._remember(outcome)
            if not dry_run:
                self._state = TrafficState(total=self._state.total)
            return outcome

    # -- imperative (each a transition of the state) ------------------------------------------

    def set_weight(
        self, weight: int, additional: Sequence[AdditionalDestination] | None = None, **kw: Any
    ) -> Outcome:
        with self._lock:
            verb = SetWeight(
                weight=weight,
                additional_destinations=None if additional is None else tuple(additional),
            )
            return self.apply_state(verb.apply(self._state), **kw)

    def set_header_route(self, name: str, matches: Sequence[RequestMatch], **kw: Any) -> Outcome:
        with self._lock:
            return self.apply_state(
                SetHeaderRoute(name=name, matches=tuple(matches)).apply(self._state), **kw
            )

    def set_mirror_route(
        self, name: str, matches: Sequence[RequestMatch], percentage: float = 100.0, **kw: Any
    ) -> Outcome:
        with self._lock:
            verb = SetMirrorRoute(name=name, matches=tuple(matches), percentage=percentage)
            return self.apply_state(verb.apply(self._state), **kw)

    def remove_managed_routes(self, **kw: Any) -> Outcome:
        with self._lock:
            return self.apply_state(RemoveManagedRoutes().apply(self._state), **kw)

    # -- reading ----------------------------------------------------------------------------------

    def read(
        self, *, live: Mapping[ObjectRef, JSON | None] | None = None, fresh: bool = False
    ) -> LiveObjects:
        """The targets as they are now (objects in ``live`` are not read again); ``fresh``
        reads from the server even with a cache (after a conflict)."""
        list_objects = lister(self.kube, self.cache, fresh=fresh)
        return gather(self._bindings, self._reader(fresh=fresh), live, list_objects=list_objects)

    def plan(
        self, desired: Desired, *, live: Mapping[ObjectRef, JSON | None] | None = None
    ) -> tuple[list[Plan], LiveObjects]:
        """What applying ``desired`` would do, without writing (``apply --dry-run=client``)."""
        snapshot = self.read(live=live)
        plans = plan_all(self._bindings, snapshot, desired, self.facts(), routing=self.config)
        return plans, snapshot

    def reconcile(self, desired: Desired, *, dry_run: bool = False) -> Outcome:
        """``apply_state`` or ``cleanup``, whichever ``desired`` is."""
        if isinstance(desired, Cleanup):
            return self.cleanup(restore_stable=desired.restore_stable, dry_run=dry_run)
        return self.apply_state(desired, dry_run=dry_run)

    def targets(self, *, live: Mapping[ObjectRef, JSON | None] | None = None) -> list[ObjectRef]:
        """Every object this config routes through (what to watch, where progress is kept)."""
        snapshot = self.read(live=live)
        out: list[ObjectRef] = []
        for b in self._bindings:
            out.extend(r for r in target_refs(b, snapshot) if r not in out)
        return out

    def observe(self, *, live: Mapping[ObjectRef, JSON | None] | None = None) -> list[Observation]:
        return observe_all(self._bindings, self.read(live=live), self.facts())

    def verify(
        self,
        state: TrafficState | None = None,
        *,
        live: Mapping[ObjectRef, JSON | None] | None = None,
        require_ready: bool = False,
    ) -> VerifyReport:
        want = state or self.state
        return verify(
            self._bindings,
            self.observe(live=live),
            want,
            self.facts(),
            require_ready=require_ready,
            routing=self.config,
        )
