"""The calls of Argo Rollouts' TrafficRouterPlugin, as the Go bridge forwards them.

Argo's semantics, mapped exactly:

* ``SetWeight(desired, additionalDestinations)``: canary ``desired`` out of ``maxTrafficWeight``
  (default 100), each experiment destination its own weight, stable the rest;
* ``SetHeaderRoute`` / ``SetMirrorRoute``: add or replace the named route; an empty ``match``
  removes it; mirror ``percentage`` defaults to 100;
* ``RemoveManagedRoutes``: every header and mirror route goes; weights stay;
* while the Rollout is aborted, ``SetHeaderRoute`` / ``SetMirrorRoute`` write nothing and
  succeed: Argo calls them for the step it stood on right after ``RemoveManagedRoutes``, and
  returns before ``SetWeight(0)`` when they fail, so a route the target cannot express would
  hold the aborted Rollout at its canary weight (and one it can would come back for a
  reconcile);
* ``UpdateHash``: pod-template hashes for label-selected subsets (Istio DestinationRule);
* ``VerifyWeight``: ``Verified``/``NotVerified`` from reading the objects back, and from the data
  plane's readiness where the target reports it (Gateway API route conditions);
  ``NotImplemented`` only when no configured target splits by weight.

Anything a target cannot express is an error with the reason, never a silent success. Argo
records a failed SetWeight or VerifyWeight as a Warning Event on the Rollout, but a failed
UpdateHash, SetHeaderRoute, SetMirrorRoute or RemoveManagedRoutes only in its log; for those we
record the Event ourselves (reason :data:`EVENT_REASON`, through an :class:`EventRecorder`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from routers.argo.rollout import RolloutView, aborted, destinations
from routers.argo.session import RouterFactory, Session, Sessions, make_router_factory
from routers.cluster import ApiStatus, EventRecorder, Kube, Outcome, WatchCache
from routers.errors import ApplyError, ConfigError, Problem, RoutersError
from routers.model import AdditionalDestination, RemoveManagedRoutes, TrafficState
from routers.model.config import plugin_name
from routers.model.steps import argo_set_header_route, argo_set_mirror_route
from routers.registry import Registry, default_registry

__all__ = ["EVENT_METHODS", "EVENT_REASON", "METHODS", "ArgoPlugin", "CallError"]

log = logging.getLogger("routers.argo")

METHODS = (
    "InitPlugin",
    "UpdateHash",
    "SetWeight",
    "SetHeaderRoute",
    "SetMirrorRoute",
    "RemoveManagedRoutes",
    "VerifyWeight",
)

EVENT_METHODS = frozenset({"UpdateHash", "SetHeaderRoute", "SetMirrorRoute", "RemoveManagedRoutes"})
"""Calls whose errors Argo Rollouts (v1.8-v1.10) only logs: we record them as Events."""

EVENT_REASON = "CanaryRoutersError"


class CallError(RoutersError):
    """A call failed; the message is what Argo shows (event and controller log)."""


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError([Problem(where, f"expected an integer, got {value!r}")])
    return value


def _hash(value: Any) -> str | None:
    return str(value) if value else None


class ArgoPlugin:
    """Serves one ``trafficRouterPlugins`` entry (e.g. ``canary-routers/istio``).

    With ``cache`` (a :class:`WatchCache` on ``kube``), every Rollout's Router reads its
    targets from memory: a steady SetWeight/VerifyWeight sends no GET, a step only its PATCH.
    """

    def __init__(
        self,
        plugin: str,
        kube: Kube,
        *,
        registry: Registry | None = None,
        make_router: RouterFactory | None = None,
        cache: WatchCache | None = None,
        events: EventRecorder | None = None,
        limit: int = 1024,
    ) -> None:
        self.plugin = plugin
        self.kube = kube
        self.cache = cache
        self.events = events
        """Where the errors of :data:`EVENT_METHODS` are recorded (None: not recorded)."""
        self.registry = registry or default_registry()
        self.sessions = Sessions(
            plugin,
            make_router or make_router_factory(kube, self.registry, cache),
            self.registry,
            limit=limit,
        )

    def handle(self, method: str, rollout: Any, args: Mapping[str, Any]) -> Any:
        """Run one call; raise :class:`CallError` with the message Argo should show."""
        if method == "InitPlugin":
            return self.init()
        if method not in METHODS:
            raise CallError(
                f"{self.plugin}: unknown call {method!r} (are the bridge and the canary-routers "
                "package of matching versions?)"
            )
        view: RolloutView | None = None
        try:
            view = RolloutView.of(rollout, self.plugin)
            session = self.sessions.get(view)
            with session.lock:
                return self._dispatch(method, session, view, rollout, args)
        except RoutersError as exc:
            where = f"{self.plugin}: {view}" if view is not None else self.plugin
            error = CallError(f"{where}: {method}: {exc}")
            if self.events is not None and view is not None and method in EVENT_METHODS:
                self.events.warning(view.involved(), EVENT_REASON, str(error))
            raise error from exc

    def _dispatch(
        self,
        method: str,
        session: Session,
        view: RolloutView,
        rollout: Mapping[str, Any],
        args: Mapping[str, Any],
    ) -> Any:
        if method == "VerifyWeight":
            weight = _int(args.get("desiredWeight"), "desiredWeight")
            verdict, why = session.verify(view, rollout, weight, _destinations(args))
            if why:
                log.info("%s: weight %d %s: %s", view, weight, verdict, "; ".join(why))
            return verdict
        transition: Callable[[TrafficState], TrafficState] = lambda s: s  # noqa: E731
        told: dict[str, Any] = {}
        what = method
        if method == "SetWeight":
            told["weight"] = _int(args.get("desiredWeight"), "desiredWeight")
            told["additional"] = _destinations(args)
            what = f"SetWeight {told['weight']}"
        elif method == "UpdateHash":
            told["hashes"] = (_hash(args.get("canaryHash")), _hash(args.get("stableHash")))
            # The same destinations (with their hashes) come with the SetWeight that follows.
            told["additional"] = _destinations(args)
        elif method in ("SetHeaderRoute", "SetMirrorRoute") and aborted(rollout):
            log.info("%s: aborted: %s not applied (an abort removes managed routes)", view, method)
            return None
        elif method == "SetHeaderRoute":
            transition = argo_set_header_route(args.get("setHeaderRoute"), "setHeaderRoute").apply
            what = f"SetHeaderRoute {(args.get('setHeaderRoute') or {}).get('name')!r}"
        elif method == "SetMirrorRoute":
            transition = argo_set_mirror_route(args.get("setMirrorRoute"), "setMirrorRoute").apply
            what = f"SetMirrorRoute {(args.get('setMirrorRoute') or {}).get('name')!r}"
        elif method == "RemoveManagedRoutes":
            transition = RemoveManagedRoutes().apply
        outcome = session.change(view, rollout, transition, **told)
        _log_outcome(view, what, outcome)
        return None

    def init(self) -> None:
        """Fail early and clearly: a plugin name Argo would refuse, a target plugin that is not
        installed, an API server we cannot reach."""
        org, sep, name = self.plugin.partition("/")
        if not sep or not org or not name or "/" in name:
            raise CallError(f"plugin name {self.plugin!r} is not <org>/<name>")
        target = plugin_name(self.plugin)
        if target not in self.registry.names():
            installed = ", ".join(self.registry.names()) or "none"
            raise CallError(
                f"{self.plugin}: no installed canary-routers plugin is named {target!r} "
                f"(installed: {installed})"
            )
        try:
            self.registry.load(target)
            self.kube.served_groups(refresh=True)
        except ApiStatus as exc:
            raise CallError(f"{self.plugin}: cannot reach the API server: {exc}") from None
        except (ApplyError, RoutersError) as exc:
            raise CallError(f"{self.plugin}: {exc}") from None


def _destinations(args: Mapping[str, Any]) -> tuple[AdditionalDestination, ...]:
    return destinations(args.get("additionalDestinations"), "additionalDestinations")


def _log_outcome(view: RolloutView, what: str, outcome: Outcome) -> None:
    if outcome.writes:
        done = ", ".join(a.describe() for a in outcome.applied)
        log.info("%s: %s: %d write(s): %s", view, what, outcome.writes, done)
    else:
        log.debug("%s: %s: in effect, nothing written", view, what)
