"""The ``nginx`` section: Argo Rollouts' ``trafficRouting.nginx``, plus our switches.

An Argo user's section validates unchanged (``annotationPrefix``, ``stableIngress`` /
``stableIngresses``, ``additionalIngressAnnotations``, ``canaryIngressAnnotations``). The
switches default to the strict reading: nothing is rounded, nothing silently dropped, and no
annotation ingress-nginx rates risky passes unless ``allowUnsafeAnnotations`` names it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from routers.errors import ConfigError, Problem
from routers.model import RoutingConfig
from routers.model._base import Model
from routers.model._validators import (
    DnsSubdomain,
    ObjectName,
    has_control_character,
    is_host_port,
    is_qualified_key,
)
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

# nginx's variables for the client's Host; with a DNS name (optional :port) the only mirror-host
# values that cannot break out of the `proxy_set_header Host ...;` line they are rendered into.
_HOST_VARIABLES = ("$host", "$http_host")


def _cookie(value: str) -> str:
    ann.check_cookie_name(value)
    return value


def _mirror_host(value: str) -> str:
    if value not in _HOST_VARIABLES and not is_host_port(value):
        raise ValueError(
            f"{value!r} is not a valid mirror host (a lowercase DNS name with optional :port, "
            "or $host / $http_host to keep the client's Host)"
        )
    return value


CookieName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_cookie)]
MirrorHost = Annotated[str, Field(min_length=1, max_length=260), AfterValidator(_mirror_host)]


def _word(value: str) -> str:
    # The controller trims each word; an empty one would be found in every value.
    if not value.strip() or value != value.strip() or has_control_character(value):
        raise ValueError(f"{value!r} is not a blocklist word (non-empty, no surrounding spaces)")
    return value


BlockedWord = Annotated[str, AfterValidator(_word)]


class NginxSection(Model):
    annotation_prefix: DnsSubdomain = "nginx.ingress.kubernetes.io"
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
    cluster_domain: DnsSubdomain = "cluster.local"
    annotation_value_word_blocklist: Annotated[tuple[BlockedWord, ...], Field(strict=False)] = ()
    """The controller's ``annotation-value-word-blocklist`` (ConfigMap), as a list: a value we
    would write under the prefix that contains one of these words is refused before the
    controller's admission webhook refuses the whole Ingress."""
    allow_unsafe_annotations: Annotated[tuple[str, ...], Field(strict=False)] = ()
    """Annotation keys passed through verbatim although ingress-nginx rates them High/Critical
    risk (``configuration-snippet``, ``auth-url``, ...) or their values leave the safe set.
    Names without ``/`` get ``<annotationPrefix>/``, as in ``additionalIngressAnnotations``."""

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
    unsafe: frozenset[str] = frozenset()
    """Keys of ``static`` passed verbatim because ``allowUnsafeAnnotations`` names them."""

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
    if not is_qualified_key(key):
        return Problem(where, f"{key!r} is not a valid annotation key")
    return None


def _prefixed(section: NginxSection, key: str) -> str:
    """Argo's rule: a key without ``/`` is an ingress-nginx annotation name."""
    return key if "/" in key else f"{section.annotation_prefix}/{key}"


def _allowed_unsafe(section: NginxSection) -> tuple[frozenset[str], list[Problem]]:
    problems: list[Problem] = []
    keys: set[str] = set()
    for i, raw in enumerate(section.allow_unsafe_annotations):
        key = _prefixed(section, raw)
        problem = _annotation_key(key, f"allowUnsafeAnnotations[{i}]")
        if problem is not None:
            problems.append(problem)
        keys.add(key)
    return frozenset(keys), problems


def _static_annotations(
    section: NginxSection,
) -> tuple[dict[str, str], frozenset[str], list[Problem]]:
    """The merged config annotations, the unsafe keys among them that the config allows, and
    the problems of both fields."""
    allowed, problems = _allowed_unsafe(section)
    merged: dict[str, str] = {}
    configured: set[str] = set()
    sources: list[tuple[str, Mapping[str, str], bool]] = [
        ("additionalIngressAnnotations", section.additional_ingress_annotations, True),
        ("canaryIngressAnnotations", section.canary_ingress_annotations, False),
    ]
    for field, values, add_prefix in sources:
        for raw_key, value in values.items():
            where = f"{field}.{raw_key}"
            key = _prefixed(section, raw_key) if add_prefix else raw_key
            configured.add(key)
            problem = _annotation_key(key, where)
            if problem is None:
                problem = ann.check_static(
                    key,
                    value,
                    section.annotation_prefix,
                    where,
                    allow_unsafe=key in allowed,
                    blocklist=section.annotation_value_word_blocklist,
                )
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
    unused = sorted(allowed - configured)
    problems.extend(
        Problem(
            "allowUnsafeAnnotations",
            f"{key} is not set by additionalIngressAnnotations or canaryIngressAnnotations",
        )
        for key in unused
    )
    return merged, allowed & set(merged), problems


def parse(body: Mapping[str, Any], routing: RoutingConfig) -> Config:
    section = NginxSection.parse(dict(body))
    static, unsafe, problems = _static_annotations(section)
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
    return Config.build(
        section, routing, pairs=tuple(pairs), static=static, rollout=rollout, unsafe=unsafe
    )
