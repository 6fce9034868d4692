"""Which optional route fields the installed CRDs have, from their bundle version and channel.

Gateway API grows fields per release and channel; emitting a field the CRD lacks is rejected
under strict field validation (or silently pruned without it). The facts come from the CRD
annotations ``gateway.networking.k8s.io/bundle-version`` / ``channel`` (gathered by the core),
else from the config override, else from a documented assumption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from routers.contract import ClusterFacts
from routers_gatewayapi.kinds import RouteKind

__all__ = ["ASSUMED_BUNDLE", "Features", "detect"]

ASSUMED_BUNDLE = "v1.6"
"""Used when neither the cluster nor the config says: the latest standard release we know.

Offline plans are previews, and new installs get the latest standard channel; a cluster-backed
run always has the CRD annotations. The plan carries a warning Note whenever this assumption
decides what is emitted, and ``crdBundleVersion`` / ``crdChannel`` pin it."""

# (major, minor) from which a field exists, per channel.
_RULE_NAME = {"standard": (1, 4), "experimental": (1, 2)}
_MIRROR_FRACTION = {"standard": (1, 3), "experimental": (1, 2)}
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")

Channel = Literal["standard", "experimental"]


@dataclass(frozen=True)
class Features:
    kind: RouteKind
    bundle: str
    channel: Channel
    source: Literal["cluster", "config", "assumed"]
    rule_names: bool
    """``rules[].name`` (GEP-995)."""
    mirror_fraction: bool
    """``requestMirror.percent`` / ``fraction`` (GEP-3171)."""

    @property
    def assumed(self) -> bool:
        return self.source == "assumed"

    def describe(self) -> str:
        origin = {
            "cluster": "read from the CRD",
            "config": "from crdBundleVersion/crdChannel",
            "assumed": "assumed: no CRD facts and no crdBundleVersion",
        }[self.source]
        return f"{self.kind.crd} {self.channel} {self.bundle} ({origin})"


def _parse(version: str) -> tuple[int, int] | None:
    m = _VERSION.match(version.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def detect(
    kind: RouteKind,
    facts: ClusterFacts | None,
    override_bundle: str | None,
    override_channel: Channel | None,
) -> Features:
    crd = facts.crd(kind.crd) if facts is not None else None
    bundle: str | None = None
    channel: str | None = None
    source: Literal["cluster", "config", "assumed"] = "assumed"
    if crd is not None and crd.bundle_version and _parse(crd.bundle_version):
        bundle, channel, source = crd.bundle_version, crd.channel, "cluster"
    elif override_bundle is not None:
        bundle, channel, source = override_bundle, override_channel, "config"
    parsed = _parse(bundle) if bundle else None
    if parsed is None:
        bundle, parsed, channel, source = (
            ASSUMED_BUNDLE,
            _parse(ASSUMED_BUNDLE),
            "standard",
            "assumed",
        )
    assert parsed is not None
    # An unknown channel annotation is treated as standard: the smaller field set is the safe one.
    chan: Channel = "experimental" if channel == "experimental" else "standard"
    return Features(
        kind=kind,
        bundle=str(bundle),
        channel=chan,
        source=source,
        rule_names=parsed >= _RULE_NAME[chan],
        mirror_fraction=parsed >= _MIRROR_FRACTION[chan],
    )
