"""Reading what Argo Rollouts passes: the Rollout object and the arguments of each call.

Pure functions. The routing config is the Rollout's own canary fields with exactly one plugin
section, ours (``trafficRouting.plugins["<org>/<name>"]``, the same shape as Argo's built-in
``istio``/``nginx``/``smi`` blocks): Argo's built-in routers and other plugins named in the same
Rollout are Argo's business, not ours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routers.cluster import InvolvedObject
from routers.errors import ConfigError, Problem
from routers.model import WEIGHT_SCOPE_ANNOTATION, AdditionalDestination, RoutingConfig
from routers.model._base import require_mapping
from routers.model.config import RolloutRef

__all__ = [
    "RolloutView",
    "StatusWeights",
    "aborted",
    "destinations",
    "routing_document",
    "status_weights",
]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class StatusWeights:
    """``status.canary.weights``: what Argo recorded after its last successful SetWeight."""

    weight: int
    additional: tuple[AdditionalDestination, ...]
    canary_hash: str | None
    stable_hash: str | None


@dataclass(frozen=True)
class RolloutView:
    """The parts of a Rollout the plugin needs, read once per call."""

    uid: str
    name: str
    namespace: str
    document: Mapping[str, Any]
    """The routing document (a Rollout reduced to our section), see :func:`routing_document`."""

    @classmethod
    def of(cls, rollout: Any, plugin: str) -> RolloutView:
        doc = require_mapping(rollout, "rollout")
        meta = _mapping(doc.get("metadata"))
        if not meta.get("name"):
            raise ConfigError([Problem("rollout.metadata.name", "missing")])
        # Checked before anything quotes them: a name with a line break would split the
        # messages Argo records (events, controller log) and the record we write.
        try:
            ref = RolloutRef.parse(
                {k: meta[k] for k in ("name", "namespace", "uid") if meta.get(k)}
            )
        except ConfigError as exc:
            raise exc.within("rollout.metadata") from None
        namespace = ref.namespace or "default"
        uid = ref.uid or f"{namespace}/{ref.name}"
        return cls(uid, ref.name, namespace, routing_document(doc, plugin))

    @property
    def key(self) -> str:
        """Canonical text of the routing document: a changed config builds a new router."""
        return json.dumps(self.document, sort_keys=True, separators=(",", ":"))

    def config(self) -> RoutingConfig:
        return RoutingConfig.from_document(
            self.document, source=f"Rollout {self.namespace}/{self.name}"
        )

    def involved(self) -> InvolvedObject:
        """The Rollout as the subject of an Event (Argo passes it without apiVersion)."""
        meta = _mapping(self.document.get("metadata"))
        return InvolvedObject(
            str(self.document.get("apiVersion") or "argoproj.io/v1alpha1"),
            "Rollout",
            self.namespace,
            self.name,
            str(meta["uid"]) if meta.get("uid") else None,
        )

    def __str__(self) -> str:
        return f"Rollout {self.namespace}/{self.name}"


def routing_document(rollout: Mapping[str, Any], plugin: str) -> dict[str, Any]:
    """The Rollout reduced to its identity, its Services and our plugin's section.

    It stays a Rollout, read by :meth:`RoutingConfig.from_document` like any other: with
    ``pingPong`` it keeps ``status.canary.stablePingPong`` (which Service is stable), and it keeps
    the ``canary-routers.io/weight-scope`` annotation.
    """
    spec = _mapping(rollout.get("spec"))
    canary = _mapping(_mapping(spec.get("strategy")).get("canary"))
    routing = _mapping(canary.get("trafficRouting"))
    plugins = _mapping(routing.get("plugins"))
    where = "spec.strategy.canary.trafficRouting.plugins"
    if plugin not in plugins:
        named = ", ".join(sorted(str(k) for k in plugins)) or "none"
        raise ConfigError(
            [
                Problem(
                    f"{where}[{plugin!r}]",
                    f"missing: this plugin process serves {plugin!r} (plugins named in the "
                    f"Rollout: {named}); the trafficRouterPlugins entry name and the Rollout's "
                    "key must be the same",
                )
            ]
        )
    section = plugins[plugin]
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError([Problem(f"{where}[{plugin!r}]", "expected a mapping")])
    ours: dict[str, Any] = {"plugins": {plugin: dict(section or {})}}
    for key in ("managedRoutes", "maxTrafficWeight"):
        if routing.get(key) is not None:
            ours[key] = routing[key]
    picked: dict[str, Any] = {"trafficRouting": ours}
    for key in ("stableService", "canaryService", "pingPong"):
        if canary.get(key):
            picked[key] = canary[key]
    meta = _mapping(rollout.get("metadata"))
    reduced: dict[str, Any] = {
        "apiVersion": str(rollout.get("apiVersion") or "argoproj.io/v1alpha1"),
        "kind": "Rollout",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid") if meta.get(k)},
        "spec": {"strategy": {"canary": picked}},
    }
    scope = _mapping(meta.get("annotations")).get(WEIGHT_SCOPE_ANNOTATION)
    if scope is not None:
        reduced["metadata"]["annotations"] = {WEIGHT_SCOPE_ANNOTATION: scope}
    role = _mapping(_mapping(rollout.get("status")).get("canary")).get("stablePingPong")
    if "pingPong" in picked and role:
        reduced["status"] = {"canary": {"stablePingPong": role}}
    return reduced


def destinations(value: Any, where: str) -> tuple[AdditionalDestination, ...]:
    """Argo's ``[]WeightDestination`` (``{serviceName, podTemplateHash, weight}``)."""
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ConfigError([Problem(where, "expected a list")])
    out = []
    for i, raw in enumerate(value):
        d = require_mapping(raw, f"{where}[{i}]")
        body: dict[str, Any] = {"service": d.get("serviceName"), "weight": d.get("weight", 0)}
        if d.get("podTemplateHash"):
            body["podTemplateHash"] = d["podTemplateHash"]
        try:
            out.append(AdditionalDestination.parse(body))
        except ConfigError as exc:
            raise exc.within(f"{where}[{i}]") from None
    return tuple(out)


def aborted(rollout: Mapping[str, Any]) -> bool:
    """``status.abort``: the user aborted the update (``kubectl argo rollouts abort``)."""
    return _mapping(rollout.get("status")).get("abort") is True


def status_weights(rollout: Mapping[str, Any]) -> StatusWeights | None:
    """``status.canary.weights`` of the Rollout, if Argo recorded any."""
    status = _mapping(rollout.get("status"))
    weights = _mapping(_mapping(status.get("canary")).get("weights"))
    if not weights:
        return None
    canary = _mapping(weights.get("canary"))
    stable = _mapping(weights.get("stable"))
    weight = canary.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        return None
    try:
        additional = destinations(weights.get("additional"), "status.canary.weights.additional")
    except ConfigError:
        additional = ()
    return StatusWeights(
        weight=weight,
        additional=additional,
        canary_hash=canary.get("podTemplateHash") or None,
        stable_hash=stable.get("podTemplateHash") or None,
    )
