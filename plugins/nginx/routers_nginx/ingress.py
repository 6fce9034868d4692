"""Deriving the canary Ingress from the stable one, and the mirror URL of the canary Service.

ingress-nginx merges a canary Ingress into the primary's locations only where host, path and
pathType are identical (``mergeAlternativeBackends``), so the canary copies exactly the stable
Service's paths. Every other path stays out: copying a shared rule whole gave other apps
canary-annotated duplicates (Argo #3541).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from routers.errors import PlanError, TargetNotFoundError, UnsupportedError
from routers.model import MirrorRoute, RequestMatch
from routers.planning.objects import (
    JSON,
    IdentityMemo,
    LiveObjects,
    ObjectRef,
    Shape,
    get_annotations,
)
from routers_nginx import annotations as ann
from routers_nginx.config import GROUP, PLUGIN, Config, Pair

__all__ = [
    "SHAPES",
    "CanarySpec",
    "derive",
    "mirror_target",
    "service_ref",
    "stable_backends",
]


# What we read of an Ingress and a Service (networking.k8s.io/v1 and core/v1 types): objects
# from manifest files were never validated by an API server.
_BACKEND: Shape = {"service": {"name": str, "port": {"number": int, "name": str}}}
SHAPES: Mapping[tuple[str, str], Shape] = {
    (GROUP, "Ingress"): {
        "spec": {
            "ingressClassName": str,
            "defaultBackend": _BACKEND,
            "tls": [{"hosts": [str], "secretName": str}],
            "rules": [
                {
                    "host": str,
                    "http": {"paths": [{"path": str, "pathType": str, "backend": _BACKEND}]},
                }
            ],
        }
    },
    ("", "Service"): {"spec": {"ports": [{"name": str, "port": int}]}},
}


def _is_mapping(value: Any) -> bool:
    # Decoded JSON is made of dicts: skip the (slow) ABC check for them; 300 paths per read.
    return type(value) is dict or isinstance(value, Mapping)


def _service(backend: Any) -> Mapping[str, Any] | None:
    if not _is_mapping(backend):
        return None
    service = backend.get("service")
    return service if _is_mapping(service) else None


def _paths(rule: Mapping[str, Any]) -> list[Any]:
    http = rule.get("http")
    paths = http.get("paths") if isinstance(http, Mapping) else None
    return list(paths) if isinstance(paths, list) else []


def _rules(ingress: Mapping[str, Any]) -> list[Any]:
    spec = ingress.get("spec")
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    return list(rules) if isinstance(rules, list) else []


def _is_stable(path: Any, stable_service: str) -> bool:
    service = _service(path.get("backend")) if _is_mapping(path) else None
    return service is not None and service.get("name") == stable_service


def stable_backends(ingress: Mapping[str, Any], stable_service: str) -> list[Mapping[str, Any]]:
    """The ``backend.service`` of every path that routes to the stable Service."""
    out = []
    for rule in _rules(ingress):
        if isinstance(rule, Mapping):
            for path in _paths(rule):
                if _is_stable(path, stable_service):
                    service = _service(path["backend"])
                    assert service is not None
                    out.append(service)
    return out


@dataclass(frozen=True)
class CanarySpec:
    """What the canary Ingress copies from the stable one (everything else is ours)."""

    rules: list[JSON]
    tls: list[JSON] | None
    class_name: str | None
    class_annotation: str | None


def derive(config: Config, pair: Pair, stable: Mapping[str, Any]) -> CanarySpec:
    """The stable Service's rules and paths, repointed at the canary Service.

    Only the containers on the way to each changed name are new; the rest is shared with
    ``stable`` (read-only, as every plan input; the patch builder copies what it emits), so a
    300-path Ingress is not deep-copied. A step derives from the same stable Ingress in plan()
    and in observe(), and steps in a row mostly do too: it is derived once per object."""
    return _DERIVED.get((config, pair, stable), lambda: _derive(config, pair, stable))


_DERIVED: IdentityMemo[CanarySpec] = IdentityMemo()


def _derive(config: Config, pair: Pair, stable: Mapping[str, Any]) -> CanarySpec:
    rules: list[JSON] = []
    for rule in _rules(stable):
        if not isinstance(rule, Mapping):
            continue
        kept = []
        for path in _paths(rule):
            if _is_stable(path, config.stable):
                backend = path["backend"]
                service = {**backend["service"], "name": config.canary}
                kept.append({**path, "backend": {**backend, "service": service}})
        if kept:
            rules.append({**rule, "http": {**rule["http"], "paths": kept}})
    if not rules:
        raise PlanError(
            f"no rule routes to the stable Service {config.stable!r}; the canary Ingress "
            "can only join paths the stable Ingress sends to it",
            plugin=PLUGIN,
            obj=str(pair.stable),
        )
    spec = stable.get("spec") if isinstance(stable.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    hosts = {r.get("host") for r in rules}
    tls = [
        copy.deepcopy(dict(entry))
        for entry in spec.get("tls") or []
        if isinstance(entry, Mapping)
        and (not entry.get("hosts") or hosts & set(entry.get("hosts") or []))
    ]
    class_name = spec.get("ingressClassName")
    return CanarySpec(
        rules=rules,
        tls=tls or None,
        class_name=class_name if isinstance(class_name, str) else None,
        class_annotation=get_annotations(stable).get(ann.CLASS_ANNOTATION),
    )


def service_ref(config: Config) -> ObjectRef:
    return ObjectRef("", "Service", config.namespace, config.canary, "v1")


def needs_service(config: Config, live: LiveObjects) -> bool:
    """Whether a named port must be resolved through the canary Service (mirror URLs only).
    Asked by every targets() call, four per step: each stable Ingress is looked at once."""
    for pair in config.pairs:
        stable = live.get(pair.stable)
        if stable is not None and _NAMED_PORT.get(
            (config, stable), partial(_names_a_port, config, stable)
        ):
            return True
    return False


_NAMED_PORT: IdentityMemo[bool] = IdentityMemo()


def _names_a_port(config: Config, stable: Mapping[str, Any]) -> bool:
    for service in stable_backends(stable, config.stable):
        port = service.get("port")
        if isinstance(port, Mapping) and port.get("name"):
            return True
    return False


_SCHEMES = {"HTTP": ("http", 80), "HTTPS": ("https", 443)}


def mirror_target(
    config: Config, pair: Pair, stable: Mapping[str, Any], live: LiveObjects, route: MirrorRoute
) -> str:
    """``<scheme>://<canary>.<ns>.svc.<domain>[:port]$request_uri`` for this stable Ingress.

    ``mirror-target`` applies to every location of the Ingress that carries it, so it is only
    planned when every path of that Ingress belongs to the stable Service and the route's
    match covers all of them.
    """
    instruction = f"setMirrorRoute {route.name!r}"

    def refuse(reason: str, hint: str) -> UnsupportedError:
        return UnsupportedError(PLUGIN, instruction, f"{pair.stable}: {reason}", hint=hint)

    foreign = sorted(
        {
            f"{rule.get('host') or '*'}{path.get('path') or ''}"
            for rule in _rules(stable)
            if isinstance(rule, Mapping)
            for path in _paths(rule)
            if isinstance(path, Mapping) and not _is_stable(path, config.stable)
        }
    )
    spec = stable.get("spec") if isinstance(stable.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    default = spec.get("defaultBackend")
    default_service = _service(default)
    if default is not None and (
        default_service is None or default_service.get("name") != config.stable
    ):
        foreign.append("defaultBackend")
    if foreign:
        raise refuse(
            f"mirror-target would also copy other backends' traffic ({', '.join(foreign)}) "
            "to the canary: ingress-nginx mirrors every location of the Ingress carrying it",
            "move the stable Service's paths into an Ingress of their own",
        )
    _check_covers(route, stable, refuse)
    protocol = str(get_annotations(stable).get(f"{config.prefix}/backend-protocol") or "HTTP")
    if protocol.upper() not in _SCHEMES:
        raise refuse(
            f"backend-protocol {protocol} cannot be mirrored through an http(s) mirror-target",
            "mirror HTTP or HTTPS backends only",
        )
    scheme, default_port = _SCHEMES[protocol.upper()]
    ports = set()
    for service in stable_backends(stable, config.stable):
        ports.add(_port_number(config, service.get("port"), live, pair))
    if default_service is not None:
        ports.add(_port_number(config, default_service.get("port"), live, pair))
    if len(ports) != 1:
        raise refuse(
            f"the stable Service is reached on several ports ({sorted(ports)}); one mirror-target "
            "can name one",
            "use one port for the stable Service in this Ingress",
        )
    (port,) = ports
    suffix = "" if port == default_port else f":{port}"
    host = f"{config.canary}.{config.namespace}.svc.{config.section.cluster_domain}"
    return f"{scheme}://{host}{suffix}$request_uri"


def mirror_host(config: Config) -> str:
    if config.section.mirror_host:
        return config.section.mirror_host
    return f"{config.canary}.{config.namespace}.svc.{config.section.cluster_domain}"


def _port_number(config: Config, port: Any, live: LiveObjects, pair: Pair) -> int:
    if not isinstance(port, Mapping):
        raise PlanError(
            "a backend of the stable Service has no port", plugin=PLUGIN, obj=str(pair.stable)
        )
    number = port.get("number")
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    name = port.get("name")
    ref = service_ref(config)
    service = live.get(ref)
    if service is None:
        raise TargetNotFoundError(
            f"needed to resolve the named port {name!r} for the mirror URL, but it does not exist",
            plugin=PLUGIN,
            obj=str(ref),
        )
    for entry in (service.get("spec") or {}).get("ports") or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get("port")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    raise PlanError(f"has no port named {name!r}", plugin=PLUGIN, obj=str(ref))


def _under(path: str, prefix: str) -> bool:
    """Element-wise prefix: ``/api`` covers ``/api`` and ``/api/v1`` but not ``/apis``."""
    if prefix == "/":
        return True
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/")


def _check_covers(
    route: MirrorRoute,
    stable: Mapping[str, Any],
    refuse: Callable[[str, str], UnsupportedError],
) -> None:
    hint = (
        "ingress-nginx mirrors all requests of the Ingress; use one match with only "
        "path: {prefix: /} (or a prefix covering every path of the Ingress)"
    )
    matches: Sequence[RequestMatch] = route.matches
    if len(matches) != 1:
        raise refuse(f"{len(matches)} ORed matches cannot be mirrored separately", hint)
    match = matches[0]
    conditions = [
        what
        for what, present in (
            ("headers", bool(match.headers)),
            ("method", match.method is not None),
            ("queryParams", bool(match.query_params)),
        )
        if present
    ]
    if conditions:
        raise refuse(f"matches[0]: cannot mirror on {', '.join(conditions)} conditions", hint)
    path = match.path
    if path is None or path.kind != "prefix":
        raise refuse("matches[0]: only a path prefix can describe what nginx mirrors", hint)
    paths = [
        p
        for rule in _rules(stable)
        if isinstance(rule, Mapping)
        for p in _paths(rule)
        if isinstance(p, Mapping)
    ]
    uncovered = sorted(
        str(p.get("path") or "/")
        for p in paths
        if path.value != "/"
        and (
            p.get("pathType") not in ("Prefix", "Exact")
            or not _under(str(p.get("path") or "/"), path.value)
        )
    )
    if uncovered:
        raise refuse(
            f"matches[0]: path prefix {path.value!r} does not cover {', '.join(uncovered)}, "
            "which nginx would mirror too",
            hint,
        )
