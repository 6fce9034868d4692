"""One session per Rollout (uid): Argo's calls turned into declarative states of one Router.

Every call applies a *whole* :class:`TrafficState` (the same state twice writes nothing, a managed
route someone deleted comes back). The state is rebuilt on each call from three sources, so a
restarted plugin or controller continues where it stood, without lost or repeated routes:

* the call's own arguments (SetWeight/VerifyWeight: weight and experiment destinations;
  UpdateHash: pod-template hashes; SetHeaderRoute/SetMirrorRoute/RemoveManagedRoutes: routes);
* the managed routes, *recorded* on the first target object that exists (the holder) in the
  annotation ``canary-routers.io/argo-<hash>`` before they are applied (write-ahead), because
  Argo sends a route only on its step and never again;
* for weight and hashes not yet received by this process: what this process was told last, else
  ``status.canary.weights`` of the Rollout, which Argo writes after every successful SetWeight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from routers.argo.rollout import RolloutView, status_weights
from routers.cluster import Kube, Outcome, Router, WatchCache
from routers.cluster.holder import find_holder, write_annotation
from routers.engine import bind
from routers.errors import ConfigError, PlanError
from routers.model import (
    AdditionalDestination,
    HeaderRoute,
    MirrorRoute,
    RoutingConfig,
    TrafficState,
)
from routers.planning.objects import JSON, LiveObjects, ObjectRef, get_annotations
from routers.planning.ownership import DOMAIN
from routers.registry import Registry

__all__ = ["RECORD_PREFIX", "Session", "Sessions", "Verdict", "record_key"]

log = logging.getLogger("routers.argo")

RECORD_PREFIX = f"{DOMAIN}/argo-"

Verdict = Literal["Verified", "NotVerified", "NotImplemented"]

RouterFactory = Callable[[RoutingConfig], Router]
"""Builds the Router of a session: the place to hand in a shared watch cache, say."""


def record_key(config: RoutingConfig, plugin: str, namespace: str) -> str:
    """The annotation holding one Rollout's managed routes for one plugin entry.

    Keyed like the ledger entries (the Rollout's namespace/name), so several Rollouts can share
    a VirtualService or an HTTPRoute without touching each other's record.
    """
    digest = hashlib.sha256(f"{config.owner_key(namespace)}\n{plugin}".encode()).hexdigest()
    return RECORD_PREFIX + digest[:16]


@dataclass(frozen=True)
class _Routes:
    header: tuple[HeaderRoute, ...] = ()
    mirror: tuple[MirrorRoute, ...] = ()


class Session:
    """The router of one Rollout plus what this process was told by Argo about it."""

    def __init__(
        self,
        view: RolloutView,
        plugin: str,
        make_router: RouterFactory,
        registry: Registry | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.plugin = plugin
        self.key = view.key
        self.config = view.config()
        self.bindings = bind(self.config, registry)
        self.router = make_router(self.config)
        self.record = record_key(self.config, plugin, view.namespace)
        self.total = self.config.max_traffic_weight or 100
        # None: not told since this process started (fall back to the Rollout's status)
        self.weight: int | None = None
        self.additional: tuple[AdditionalDestination, ...] | None = None
        self.hashes: tuple[str | None, str | None] | None = None

    def inherit(self, old: Session) -> None:
        """Keep what Argo told the previous session of this Rollout (its config changed)."""
        self.weight, self.additional, self.hashes = old.weight, old.additional, old.hashes

    # -- reading ----------------------------------------------------------------------------

    def _snapshot(self) -> LiveObjects:
        return self.router.read()

    def _holder(self, snapshot: LiveObjects) -> tuple[ObjectRef, JSON] | None:
        return find_holder(self.router, live=snapshot.known())

    def _recorded(self, view: RolloutView, holder: tuple[ObjectRef, JSON] | None) -> _Routes:
        if holder is None:
            return _Routes()
        raw = get_annotations(holder[1]).get(self.record)
        if not raw:
            return _Routes()
        where = f"{holder[0]} annotation {self.record}"
        try:
            data = json.loads(raw)
        except ValueError:
            raise PlanError(f"{where} is not JSON; delete it to drop the recorded routes") from None
        if not isinstance(data, Mapping) or data.get("uid") != view.uid:
            # Another incarnation of this Rollout recorded it: Argo starts a re-created
            # Rollout afresh, and so do we (its routes are removed, the record replaced).
            return _Routes()
        try:
            return _Routes(
                tuple(HeaderRoute.parse(r) for r in data.get("headerRoutes") or ()),
                tuple(MirrorRoute.parse(r) for r in data.get("mirrorRoutes") or ()),
            )
        except ConfigError as exc:
            raise PlanError(
                f"{where} is unreadable ({exc}); delete it to drop the recorded routes"
            ) from None

    def _record_value(self, view: RolloutView, state: TrafficState) -> str | None:
        if not state.header_routes and not state.mirror_routes:
            return None
        data = {
            "plugin": self.plugin,
            "rollout": f"{view.namespace}/{view.name}",
            "uid": view.uid,
            "headerRoutes": [r.dump() for r in state.header_routes],
            "mirrorRoutes": [r.dump() for r in state.mirror_routes],
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def _state(
        self,
        rollout: Mapping[str, Any],
        routes: _Routes,
        *,
        weight: int | None = None,
        additional: tuple[AdditionalDestination, ...] | None = None,
        hashes: tuple[str | None, str | None] | None = None,
    ) -> TrafficState:
        """The desired state: this call's values, else what we were told, else the status."""
        status = status_weights(rollout)
        fields: dict[str, Any] = {
            "total": self.total,
            "header_routes": routes.header,
            "mirror_routes": routes.mirror,
        }
        if hashes is None:
            hashes = self.hashes
        if hashes is None and status is not None:
            hashes = (status.canary_hash, status.stable_hash)
        fields["canary_hash"], fields["stable_hash"] = hashes or (None, None)
        told_weight = weight if weight is not None else self.weight
        told_additional = additional if additional is not None else self.additional
        fields["weight"] = told_weight if told_weight is not None else 0
        fields["additional_destinations"] = told_additional or ()
        if status is not None and (told_weight is None or told_additional is None):
            fallback = dict(fields)
            if told_weight is None:
                fallback["weight"] = status.weight
            if told_additional is None:
                fallback["additional_destinations"] = status.additional
            try:
                return TrafficState.parse(fallback)
            except ConfigError:
                pass  # a status from another maxTrafficWeight: start from 0 instead
        return TrafficState.parse(fields)

    # -- calls ------------------------------------------------------------------------------

    def change(
        self,
        view: RolloutView,
        rollout: Mapping[str, Any],
        transition: Callable[[TrafficState], TrafficState],
        **told: Any,
    ) -> Outcome:
        """Apply the state after ``transition``; record changed routes before applying them."""
        snapshot = self._snapshot()
        holder = self._holder(snapshot)
        state = transition(self._state(rollout, self._recorded(view, holder), **told))
        wanted = self._record_value(view, state)
        current = get_annotations(holder[1]).get(self.record) if holder else None
        record_after = False
        if wanted != current:
            # Refuse unsupported or invalid routes before they are recorded.
            self.router.plan(state, live=snapshot.known())
            if holder is not None:
                written = write_annotation(self.router, self.record, wanted, found=holder)
                if written is not None:
                    snapshot = snapshot.merged({written[0]: written[1]})
                    log.info(
                        "%s: managed routes %s recorded on %s",
                        view,
                        list(state.route_names) or "(none)",
                        written[0],
                    )
            else:
                record_after = wanted is not None
        outcome = self.router.apply_state(state, live=snapshot.known())
        if record_after:
            write_annotation(self.router, self.record, wanted)
        for name in ("weight", "additional", "hashes"):
            if told.get(name) is not None:
                setattr(self, name, told[name])
        return outcome

    def verify(
        self,
        view: RolloutView,
        rollout: Mapping[str, Any],
        weight: int,
        additional: tuple[AdditionalDestination, ...],
    ) -> tuple[Verdict, tuple[str, ...]]:
        """Do the objects express this weight (and our routes), and where the target reports
        data-plane readiness, has the data plane accepted them?"""
        snapshot = self._snapshot()
        routes = self._recorded(view, self._holder(snapshot))
        state = self._state(rollout, routes, weight=weight, additional=additional)
        facts = self.router.facts()
        if not any(b.plugin.capabilities(b.config, facts).weight for b in self.bindings):
            return "NotImplemented", ()  # no target of this config splits by weight
        report = self.router.verify(state, live=snapshot.known(), require_ready=True)
        return ("Verified" if report.ok else "NotVerified"), report.mismatches


class Sessions:
    """Sessions by Rollout uid, least recently used dropped beyond ``limit`` (all state is
    rebuilt from the cluster, so dropping one costs reads, never correctness)."""

    def __init__(
        self,
        plugin: str,
        make_router: RouterFactory,
        registry: Registry | None = None,
        *,
        limit: int = 1024,
    ) -> None:
        self.plugin = plugin
        self.make_router = make_router
        self.registry = registry
        self.limit = limit
        self._lock = threading.Lock()
        self._by_uid: OrderedDict[str, Session] = OrderedDict()

    def get(self, view: RolloutView) -> Session:
        with self._lock:
            session = self._by_uid.get(view.uid)
            if session is not None and session.key == view.key:
                self._by_uid.move_to_end(view.uid)
                return session
        fresh = Session(view, self.plugin, self.make_router, self.registry)
        with self._lock:
            old = self._by_uid.get(view.uid)
            if old is not None and old.key == view.key:
                self._by_uid.move_to_end(view.uid)
                return old
            if old is not None:
                fresh.inherit(old)
            self._by_uid[view.uid] = fresh
            self._by_uid.move_to_end(view.uid)
            while len(self._by_uid) > self.limit:
                self._by_uid.popitem(last=False)
            return fresh


def make_router_factory(
    kube: Kube, registry: Registry | None, cache: WatchCache | None = None
) -> RouterFactory:
    """Routers on ``kube``; with ``cache``, every session's Router reads through it."""

    def make(config: RoutingConfig) -> Router:
        return Router(config, kube=kube, registry=registry, cache=cache)

    return make
