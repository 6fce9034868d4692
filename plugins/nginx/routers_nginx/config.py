"""The ``nginx`` section: Argo Rollouts' ``trafficRouting.nginx``, plus our switches.

An Argo user's section validates unchanged (``annotationPrefix``, ``stableIngress`` /
``stableIngresses``, ``additionalIngressAnnotations``, ``canaryIngressAnnotations``). The
switches default to the strict reading: nothing is rounded, nothing silently dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from routers.errors import ConfigError, Problem
from routers.model import RoutingConfig
from routers.model._base import Model
from routers.model._validators import ObjectName
from routers.planning.objects import ObjectRef
from routers.planning.sections import Common, SectionConfig
from routers_nginx import annotations as ann

__all__ = [
    "GROUP",
    "PLUGIN",
    "Config",
    "NginxSection",
    "canary_ingress_name",
    "ingress_ref",
    "parse",
]

PLUGIN = "nginx"
GROUP = "networking.k8s.io"
VERSION = "v1"
_MAX_NAME = 253
_SUFFIX = "-canary"

# Kubernetes qualified name (the part after the optional "<prefix>/" of an annotation key).
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A DNS name with an optional port, or nginx's $host: the only mirror-host values that cannot
# break out of the `proxy_set_header Host ...;` line ingress-nginx renders them into.
_MIRROR_HOST = re.compile(
    r"^(\$host|\$http_host|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:\d{1,5})?)$"
)


def _prefix(value: str) -> str:
    if len(value) > _MAX_NAME or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid annotation prefix (DNS-1123 subdomain)")
    return value


def _cookie(value: str) -> str:
    ann.check_cookie_name(value)
    return value


def _mirror_host(value: str) -> str:
    if not _MIRROR_HOST.match(value):
        raise ValueError(
            f"{value!r} is not a valid mirror host (a lowercase DNS name with optional :port, "
            "or $host / $http_host to keep the client's Host)"
        )
    return value


AnnotationPrefix = Annotated[str, AfterValidator(_prefix)]
CookieName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_cookie)]
MirrorHost = Annotated[str, Field(min_length=1, max_length=260), AfterValidator(_mirror_host)]
ClusterDomain = Annotated[str, AfterValidator(_prefix)]


class NginxSection(Model):
    annotation_prefix: AnnotationPrefix = "nginx.ingress.kubernetes.io"
    stable_ingress: ObjectName | None = None
    stable_ingresses: Annotated[tuple[ObjectName, ...], Field(strict=False)] = ()
    additional_ingress_annotations: dict[str, str] = Field(default_factory=dict)
    """Keys get ``<annotationPrefix>/`` unless they already contain a ``/`` (Argo's rule)."""
    canary_ingress_annotations: dict[str, str] = Field(default_factory=dict)
    """Verbatim keys; they win over ``additionalIngressAnnotations`` on collision."""
    allow_mirror_round_up: bool = False
    """ingress-nginx mirrors 100% or nothing; true accepts any percentage as 100% (with a note)."""
    canary_by_cookie: CookieName | None = None
    """Cookie that opts a client in (``always``) or out (``never``) while the canary Ingress exists."""
    allow_underscore_headers: bool = False
    """Set when the controller runs with ``enable-underscores-in-headers: "true"``."""
    weight_total_annotation: bool = True
    """Emit ``canary-weight-total`` (controller >= v1.1.1); false expresses weights in 100ths."""
    mirror_host: MirrorHost | None = None
    """``mirror-host`` value; default: the canary Service's cluster DNS name."""
    cluster_domain: ClusterDomain = "cluster.local"

    @model_validator(mode="after")
    def _one_stable(self) -> NginxSection:
        if (self.stable_ingress is None) == (not self.stable_ingresses):
            raise ValueError("exactly one of stableIngress or stableIngresses must be set")
        names = list(self.stable_ingresses)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stableIngresses: {dupes[0]!r} is listed twice")
        return self

    @property
    def stable_names(self) -> tuple[str, ...]:
        return (self.stable_ingress,) if self.stable_ingress else self.stable_ingresses


@dataclass(frozen=True)
class Pair:
    """One stable Ingress and the canary Ingress we derive from it."""

    stable: ObjectRef
    canary: ObjectRef
    path: str
    """Where the stable Ingress is configured, for messages (``stableIngresses[1]``)."""
    legacy: ObjectRef | None = None
    """``<stable>-canary`` when the config names a Rollout (so ``canary`` is Argo's
    ``<rollout>-<stable>-canary``): a canary Ingress an older canary-routers created under that
    name is kept and used instead (see planner.canary_ref), never duplicated."""


@dataclass(frozen=True, kw_only=True)
class Config(SectionConfig[NginxSection]):
    pairs: tuple[Pair, ...]
    static: Mapping[str, str]
    """Annotations from the config, prefixed and merged (canaryIngressAnnotations win)."""
    rollout: str | None = None
    """The Rollout's name, when the config names one (it names the canary Ingress)."""

    @property
    def prefix(self) -> str:
        return self.section.annotation_prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def ingress_ref(namespace: str, name: str) -> ObjectRef:
    return ObjectRef(GROUP, "Ingress", namespace, name, VERSION)


def canary_ingress_name(stable: str, rollout: str | None = None) -> str:
    """``<stable>-canary``, or Argo Rollouts' ``<rollout>-<stable>-canary`` when the config names
    a Rollout: several Rollouts sharing one stable Ingress (each its own paths) then get one
    canary Ingress each. Names too long keep a hash of the full name, so two long names that
    share their first characters still get different canaries."""
    base = f"{rollout}-{stable}" if rollout else stable
    name = base + _SUFFIX
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = base[: _MAX_NAME - len(_SUFFIX) - len(digest) - 1].rstrip("-.")
    return f"{keep}-{digest}{_SUFFIX}"


def _annotation_key(key: str, where: str) -> Problem | None:
    prefix, slash, name = key.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not _QUALIFIED.match(name)
        or (slash and (len(prefix) > _MAX_NAME or not _DNS_SUBDOMAIN.match(prefix)))
    ):
        return Problem(where, f"{key!r} is not a valid annotation key")
    return None


def _static_annotations(section: NginxSection) -> tuple[dict[str, str], list[Problem]]:
    problems: list[Problem] = []
    merged: dict[str, str] = {}
    sources: list[tuple[str, Mapping[str, str], bool]] = [
        ("additionalIngressAnnotations", section.additional_ingress_annotations, True),
        ("canaryIngressAnnotations", section.canary_ingress_annotations, False),
    ]
    for field, values, add_prefix in sources:
        for raw_key, value in values.items():
            where = f"{field}.{raw_key}"
            key = (
                raw_key
                if (not add_prefix or "/" in raw_key)
                else f"{section.annotation_prefix}/{raw_key}"
            )
            problem = _annotation_key(key, where)
            if problem is None:
                problem = ann.check_static(key, value, section.annotation_prefix, where)
            if problem is not None:
                problems.append(problem)
                continue
            merged[key] = value
    cookie_key = f"{section.annotation_prefix}/{ann.CANARY_BY_COOKIE}"
    if section.canary_by_cookie is not None and cookie_key in merged:
        problems.append(
            Problem(
                "canaryByCookie",
                f"also set as {cookie_key} in the Ingress annotations; set it in one place",
            )
        )
    header = f"{section.annotation_prefix}/{ann.CANARY_BY_HEADER}"
    dependent = [
        f"{section.annotation_prefix}/{n}"
        for n in (ann.CANARY_BY_HEADER_VALUE, ann.CANARY_BY_HEADER_PATTERN)
    ]
    if header not in merged and any(k in merged for k in dependent):
        problems.append(
            Problem(
                "additionalIngressAnnotations",
                f"{ann.CANARY_BY_HEADER_VALUE}/{ann.CANARY_BY_HEADER_PATTERN} without "
                f"{ann.CANARY_BY_HEADER} has no effect in ingress-nginx",
            )
        )
    return merged, problems


def parse(body: Mapping[str, Any], routing: RoutingConfig) -> Config:
    section = NginxSection.parse(dict(body))
    static, problems = _static_annotations(section)
    namespace = Common.of(routing).namespace
    names = section.stable_names
    field = "stableIngress" if section.stable_ingress else "stableIngresses"
    pairs: list[Pair] = []
    rollout = routing.rollout.name if routing.rollout is not None else None
    for i, name in enumerate(names):
        where = field if section.stable_ingress else f"{field}[{i}]"
        canary = canary_ingress_name(name, rollout)
        legacy = canary_ingress_name(name)
        for candidate in dict.fromkeys((canary, legacy)):
            if candidate in names:
                problems.append(
                    Problem(
                        where, f"its canary Ingress {candidate!r} would be another stable Ingress"
                    )
                )
        pairs.append(
            Pair(
                ingress_ref(namespace, name),
                ingress_ref(namespace, canary),
                where,
                ingress_ref(namespace, legacy) if legacy != canary else None,
            )
        )
    if problems:
        raise ConfigError(problems)
    return Config.build(section, routing, pairs=tuple(pairs), static=static, rollout=rollout)
