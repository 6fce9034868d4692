"""The ``istio`` section: Argo Rollouts' ``trafficRouting.istio`` plus a few switches of ours.

Argo-compatible fields: ``virtualService`` | ``virtualServices[]`` (``name`` may be
``name.namespace``; a ``.svc.cluster.local`` / ``.cluster.local`` suffix is trimmed like Argo
does), ``routes``, ``tlsRoutes[{port, sniHosts}]``, ``tcpRoutes[{port}]`` and ``destinationRule``
``{name, canarySubsetName, stableSubsetName, additionalSubsetNames}``.

Our additions: ``weightTotal`` (what every weighted route sums to), ``mirrorField`` (``mirror``
or ``mirrors``), ``podTemplateHashKey`` (the subset label set from the state's hashes) and, per
VirtualService, ``delegate`` / ``delegateRoutes`` for routes that hand off to a delegate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, model_validator

from routers.errors import ConfigError, Problem
from routers.model import MAX_TOTAL, RoutingConfig, WeightScope
from routers.model._base import Model
from routers.model._validators import FreeName, LabelKey, is_dns_label, is_dns_subdomain
from routers.planning.objects import ObjectRef

__all__ = [
    "GROUP",
    "DestinationRuleConfig",
    "IstioConfig",
    "IstioSection",
    "TcpRouteSelector",
    "TlsRouteSelector",
    "VirtualServiceConfig",
    "split_name",
]

GROUP = "networking.istio.io"
VERSION = "v1"


def _dns_label(value: str) -> str:
    if not is_dns_label(value):
        raise ValueError(f"{value!r} is not a DNS-1123 label (Istio subset names must be)")
    return value


def _ref_name(value: str) -> str:
    """``name`` or ``name.namespace`` (Argo's form); checked here, split by :func:`split_name`.

    The name may be as long as any object name (253; Argo's own e2e DestinationRule
    ``istio-subset-split-in-stable-downscale-after-canary-abort-destrule`` has 66 characters),
    the namespace is a DNS-1123 label (63)."""
    name, namespace = split_name(value)
    # split_name leaves no dot in the name: a dotless DNS-1123 subdomain is a label of up to 253.
    if not is_dns_subdomain(name) or (namespace is not None and not is_dns_label(namespace)):
        raise ValueError(
            f"{value!r} is not 'name' or 'name.namespace' (a name without dots, a "
            "DNS-1123 label namespace); object names containing dots cannot be referenced "
            "in Argo's format"
        )
    return value


def _sni_host(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a valid SNI host")
    return value


def _weight_total(value: Any) -> int | str:
    """One clear message instead of pydantic's per-union-member errors."""
    if value == "state" or (
        isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TOTAL
    ):
        return value  # type: ignore[no-any-return]
    raise ValueError(f"must be an integer from 1 to {MAX_TOTAL} or 'state' (got {value!r})")


def split_name(value: str) -> tuple[str, str | None]:
    """Argo's ``name[.namespace][.svc][.cluster.local]`` -> (name, namespace or None)."""
    for suffix in (".cluster.local", ".svc"):
        if value.endswith(suffix):
            value = value[: -len(suffix)]
    name, dot, namespace = value.partition(".")
    return name, (namespace if dot else None)


SubsetName = Annotated[str, Field(min_length=1), AfterValidator(_dns_label)]
RefName = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_ref_name)]
RouteName = FreeName
Port = Annotated[int, Field(ge=1, le=65535)]
SniHost = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_sni_host)]


def _unique(items: tuple[Any, ...], what: str) -> None:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            raise ValueError(f"{what}: {item!r} is listed twice")
        seen.append(item)


class TlsRouteSelector(Model):
    """Selects the ``spec.tls[]`` route with a match on ``port`` and exactly these SNI hosts."""

    port: Port | None = None
    sni_hosts: Annotated[tuple[SniHost, ...], Field(strict=False)] = ()

    @model_validator(mode="after")
    def _something(self) -> TlsRouteSelector:
        if self.port is None and not self.sni_hosts:
            raise ValueError("set port, sniHosts or both to select a TLS route")
        return self


class TcpRouteSelector(Model):
    """Selects the ``spec.tcp[]`` route with a match on ``port``."""

    port: Port


class VirtualServiceConfig(Model):
    name: RefName
    routes: Annotated[tuple[RouteName, ...], Field(strict=False)] = ()
    tls_routes: Annotated[tuple[TlsRouteSelector, ...], Field(strict=False)] = ()
    tcp_routes: Annotated[tuple[TcpRouteSelector, ...], Field(strict=False)] = ()
    delegate: RefName | None = None
    """Delegate VirtualService the selected http route hands off to (checked against the route)."""
    delegate_routes: Annotated[tuple[RouteName, ...], Field(strict=False)] = ()
    """Routes to weight inside the delegate; empty = the single route with both Services."""

    @model_validator(mode="after")
    def _unique(self) -> VirtualServiceConfig:
        _unique(self.routes, "routes")
        _unique(self.delegate_routes, "delegateRoutes")
        _unique(tuple((t.port, frozenset(t.sni_hosts)) for t in self.tls_routes), "tlsRoutes")
        _unique(tuple(t.port for t in self.tcp_routes), "tcpRoutes")
        if self.delegate_routes and self.delegate is None:
            raise ValueError("delegateRoutes needs delegate (the delegate VirtualService's name)")
        return self


class DestinationRuleConfig(Model):
    name: RefName
    canary_subset_name: SubsetName
    stable_subset_name: SubsetName
    additional_subset_names: Annotated[tuple[SubsetName, ...], Field(strict=False)] = ()

    @model_validator(mode="after")
    def _distinct(self) -> DestinationRuleConfig:
        if self.canary_subset_name == self.stable_subset_name:
            raise ValueError("canarySubsetName and stableSubsetName must differ")
        _unique(self.additional_subset_names, "additionalSubsetNames")
        clash = {self.canary_subset_name, self.stable_subset_name} & set(
            self.additional_subset_names
        )
        if clash:
            raise ValueError(
                f"additionalSubsetNames: {sorted(clash)[0]!r} is the canary or stable subset"
            )
        return self


class IstioSection(Model):
    virtual_service: VirtualServiceConfig | None = None
    virtual_services: Annotated[tuple[VirtualServiceConfig, ...], Field(strict=False)] = ()
    destination_rule: DestinationRuleConfig | None = None
    weight_total: Annotated[int | str, PlainValidator(_weight_total)] = 100
    """100 (default) keeps Istio < 1.15 happy; any other total, or ``state`` (the state's own
    total), emits relative weights, which Istio accepts from 1.15 on."""
    mirror_field: Literal["mirror", "mirrors"] = "mirror"
    """``mirrors`` (Istio >= 1.20) instead of ``mirror`` + ``mirrorPercentage``; never both."""
    pod_template_hash_key: LabelKey = "rollouts-pod-template-hash"

    @property
    def fixed_total(self) -> int | None:
        """The total every weighted route sums to; None = the state's own total."""
        return self.weight_total if isinstance(self.weight_total, int) else None

    @model_validator(mode="after")
    def _one_form(self) -> IstioSection:
        if self.virtual_service is not None and self.virtual_services:
            raise ValueError("set virtualService or virtualServices, not both")
        if self.virtual_service is None and not self.virtual_services:
            raise ValueError("virtualService or virtualServices is required")
        return self


@dataclass(frozen=True)
class VirtualServiceTarget:
    """One configured VirtualService, resolved to a reference."""

    config: VirtualServiceConfig
    ref: ObjectRef
    path: str
    """Config path of this entry (``istio.virtualServices[1]``), for error messages."""
    delegate: ObjectRef | None

    @property
    def http_enabled(self) -> bool:
        """Argo's rule: http routes take part when named, or when no tls/tcp route is."""
        return bool(self.config.routes) or not (self.config.tls_routes or self.config.tcp_routes)


@dataclass(frozen=True)
class IstioConfig:
    """The validated section plus what it needs from the routing config."""

    section: IstioSection
    path: str
    namespace: str
    stable_service: str | None
    """``None`` only in a subset-level split (a DestinationRule names the versions)."""
    canary_service: str | None
    managed_order: tuple[str, ...]
    virtual_services: tuple[VirtualServiceTarget, ...]
    destination_rule: ObjectRef | None
    owner: str = ""
    """Whose ledger entries this config reads and writes (``RoutingConfig.owner_key``)."""
    weight_scope: WeightScope = "all"
    names: tuple[str, str] = ("stable", "canary")
    """How outcomes name stable and canary (``RoutingConfig.stable_name``/``canary_name``)."""

    @property
    def subset_mode(self) -> bool:
        return self.section.destination_rule is not None

    @property
    def http_enabled(self) -> bool:
        return any(v.http_enabled for v in self.virtual_services)

    @classmethod
    def build(cls, body: Mapping[str, Any], routing: RoutingConfig, plugin: str) -> IstioConfig:
        section = IstioSection.parse(body)
        found = routing.section(plugin)
        path = found.path if found is not None else plugin
        namespace = routing.namespace or "default"
        entries: list[tuple[VirtualServiceConfig, str]] = (
            [(section.virtual_service, "virtualService")]
            if section.virtual_service is not None
            else [(v, f"virtualServices[{i}]") for i, v in enumerate(section.virtual_services)]
        )
        targets: list[VirtualServiceTarget] = []
        seen: dict[ObjectRef, str] = {}
        problems: list[Problem] = []
        if section.destination_rule is None and (
            routing.stable_service is None or routing.canary_service is None
        ):
            # Argo's rule: a host-level split needs both Services; a subset-level split takes
            # its two versions from the DestinationRule's subsets instead.
            missing = [
                name
                for name, value in (
                    ("stableService", routing.stable_service),
                    ("canaryService", routing.canary_service),
                )
                if value is None
            ]
            problems.append(
                Problem(
                    "destinationRule",
                    f"missing, and so is {' and '.join(missing)}: a host-level split needs "
                    "stableService and canaryService; a subset-level split needs "
                    "destinationRule {name, stableSubsetName, canarySubsetName}",
                )
            )
        for vs, where in entries:
            ref = _ref(vs.name, "VirtualService", namespace)
            if ref in seen:
                problems.append(
                    Problem(f"{where}.name", f"{ref} is also configured at {seen[ref]}")
                )
            seen[ref] = where
            delegate = (
                _ref(vs.delegate, "VirtualService", ref.namespace or namespace)
                if vs.delegate
                else None
            )
            if delegate is not None and delegate == ref:
                problems.append(
                    Problem(f"{where}.delegate", "a VirtualService cannot delegate to itself")
                )
            targets.append(VirtualServiceTarget(vs, ref, f"{path}.{where}", delegate))
        if problems:
            raise ConfigError(problems)
        dr = (
            _ref(section.destination_rule.name, "DestinationRule", namespace)
            if section.destination_rule is not None
            else None
        )
        return cls(
            section=section,
            path=path,
            namespace=namespace,
            stable_service=routing.stable_service,
            canary_service=routing.canary_service,
            managed_order=tuple(r.name for r in routing.managed_routes),
            virtual_services=tuple(targets),
            destination_rule=dr,
            owner=routing.owner_key(),
            weight_scope=routing.weight_scope,
            names=(routing.stable_name, routing.canary_name),
        )


def _ref(value: str, kind: str, namespace: str) -> ObjectRef:
    name, ns = split_name(value)
    return ObjectRef(GROUP, kind, ns or namespace, name, VERSION)
