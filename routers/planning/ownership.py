"""Ownership markers: how we find again everything we added, and nothing else.

* objects we create carry the label ``app.kubernetes.io/managed-by: canary-routers`` and the
  annotation ``canary-routers.io/owner`` (the plugin name);
* objects we edit but do not own carry a *ledger* annotation listing what we added to them
  (route names, annotation keys), so cleanup removes exactly that even where the target has no
  per-item metadata (Istio routes, Gateway API rules before v1.4, Ingress annotations).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from routers.planning.objects import get_annotations, get_labels
from routers.planning.patch import PatchBuilder, pointer

__all__ = [
    "DOMAIN",
    "LEDGER",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "OWNER",
    "is_created_by_us",
    "ledger",
    "owner_metadata",
    "write_ledger",
]

DOMAIN = "canary-routers.io"
LEDGER = f"{DOMAIN}/managed"
OWNER = f"{DOMAIN}/owner"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "canary-routers"


def owner_metadata(plugin: str) -> dict[str, dict[str, str]]:
    """Labels and annotations for an object we create."""
    return {"labels": {MANAGED_BY_LABEL: MANAGED_BY}, "annotations": {OWNER: plugin}}


def is_created_by_us(obj: Mapping[str, Any], plugin: str) -> bool:
    return (
        get_labels(obj).get(MANAGED_BY_LABEL) == MANAGED_BY
        and get_annotations(obj).get(OWNER) == plugin
    )


def ledger(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger of an object we edit (empty when absent or unreadable)."""
    raw = get_annotations(obj).get(LEDGER)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_ledger(builder: PatchBuilder, data: Mapping[str, Any]) -> None:
    """Set (or remove, when ``data`` is empty) the ledger; canonical JSON keeps it idempotent."""
    path = pointer("metadata", "annotations", LEDGER)
    cleaned = {k: v for k, v in data.items() if v not in (None, [], {}, "")}
    if not cleaned:
        # The API server drops an empty annotations map; so do we, or offline and server differ.
        if builder.remove(path) and builder.get(pointer("metadata", "annotations"), None) == {}:
            builder.remove(pointer("metadata", "annotations"))
        return
    builder.set(path, json.dumps(cleaned, sort_keys=True, separators=(",", ":")))
