"""Ownership: how we find again everything we added, whose it is, and nothing else.

* objects we create carry the label ``app.kubernetes.io/managed-by: canary-routers`` and the
  annotation ``canary-routers.io/owner`` (the plugin name);
* every object we add something to carries a *ledger* annotation (``canary-routers.io/managed``)
  that files what was added under the *owner* that added it -- the routing config's
  :meth:`~routers.model.RoutingConfig.owner_key` (a Rollout, an explicit ``owner``, an app).
  Several apps share one VirtualService, HTTPRoute, Ingress or TrafficSplit: each owner's plan
  adds, changes and removes only its own entries, and two owners never hold one name.

Format (version 2; keys sorted, no spaces, so an unchanged ledger reads as no change)::

    {"owners": {"Rollout shop/a": {"routes": ["a-header"], "split": {...}},
                "Rollout shop/b": {"routes": ["b-header"]}},
     "unowned": {"routes": ["x"]},
     "v": 2}

Each owner's entries map a *field* (chosen by the plugin: ``routes``, ``rules``, ``annotations``,
...) to a list of names (a set: stored sorted) or to a mapping of names to data.

Migration from the ownerless format (version 1: the entries themselves, ``{"routes": [...]}``):
nothing is dropped. Version-1 entries -- and top-level fields an older canary-routers adds to a
version-2 ledger -- are kept under ``unowned`` until an owner *adopts* them: the plugin passes a
predicate that says which of them that owner's config or state names (a route that sends traffic
to its canary, a backend in a route it weights, a route name of its state). Adopted entries move
under that owner on its next write; the others stay ``unowned``, survive every other owner's
writes, and conflict with a claim on the same name (:data:`~routers.errors.LEGACY_HOLDER`).

Plugins use :func:`read_ledger` and :class:`OwnerLedger` only; they never parse or write the
annotation themselves.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routers.errors import LEGACY_HOLDER, OwnershipConflictError, PlanError
from routers.planning.objects import get_annotations, get_labels
from routers.planning.patch import PatchBuilder, pointer

__all__ = [
    "DOMAIN",
    "LEDGER",
    "LEDGER_VERSION",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "OWNER",
    "SPLIT",
    "Adopt",
    "Entries",
    "Ledger",
    "OwnerLedger",
    "empty_ledger",
    "is_created_by_us",
    "owner_metadata",
    "read_ledger",
    "split_entry",
]

DOMAIN = "canary-routers.io"
LEDGER = f"{DOMAIN}/managed"
OWNER = f"{DOMAIN}/owner"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "canary-routers"
LEDGER_VERSION = 2

SPLIT = "split"
"""Field holding the destinations an owner weights on an object (``{"stable": k, "canary": k}``).

One route's weights are one owner's decision: a route that carries both destinations of another
owner's split is that owner's (see :meth:`OwnerLedger.splitter`)."""

Entries = dict[str, Any]
"""One owner's entries: field -> sorted list of names, or mapping of names to data."""

Adopt = Callable[[str, str], bool]
"""``adopt(field, name)``: does this owner's config or state name this ownerless entry?"""

_ANNOTATIONS = pointer("metadata", "annotations")
_PATH = pointer("metadata", "annotations", LEDGER)
_RESERVED = frozenset({"owners", "unowned", "v"})


def owner_metadata(plugin: str) -> dict[str, dict[str, str]]:
    """Labels and annotations for an object we create."""
    return {"labels": {MANAGED_BY_LABEL: MANAGED_BY}, "annotations": {OWNER: plugin}}


def is_created_by_us(obj: Mapping[str, Any], plugin: str) -> bool:
    return (
        get_labels(obj).get(MANAGED_BY_LABEL) == MANAGED_BY
        and get_annotations(obj).get(OWNER) == plugin
    )


# -- values ------------------------------------------------------------------------------------


def _clean(entries: Mapping[str, Any]) -> Entries:
    """Canonical entries: lists of names sorted and unique, empty fields dropped."""
    out: Entries = {}
    for key, value in entries.items():
        if isinstance(value, (list, tuple, set, frozenset)):
            names = sorted({v for v in value if isinstance(v, str)})
            if names:
                out[str(key)] = names
        elif isinstance(value, Mapping):
            if value:
                out[str(key)] = {str(k): v for k, v in sorted(value.items())}
        elif value not in (None, ""):
            out[str(key)] = value
    return out


def _merge(into: Entries, more: Mapping[str, Any]) -> None:
    for key, value in _clean(more).items():
        have = into.get(key)
        if isinstance(have, list) and isinstance(value, list):
            into[key] = sorted(set(have) | set(value))
        elif isinstance(have, dict) and isinstance(value, dict):
            into[key] = {**value, **have}
        elif have is None:
            into[key] = value


def _names(value: Any) -> list[str]:
    """A field's names: a list's items, a mapping's keys, a single string (older ledgers)."""
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    return [value] if isinstance(value, str) and value else []


# -- the ledger --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    """The ledger of one object as read: every owner's entries and the ownerless ones."""

    owners: Mapping[str, Entries] = field(default_factory=dict)
    unowned: Entries = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Mapping[str, Any], *, what: str | None = None) -> Ledger:
        """The ledger annotation of ``obj`` (empty when absent or unreadable)."""
        raw = get_annotations(obj).get(LEDGER)
        return cls.parse(raw if isinstance(raw, str) else None, obj=what)

    @classmethod
    def parse(cls, raw: str | None, *, obj: str | None = None) -> Ledger:
        if not raw:
            return cls()
        newer, ledger = _parsed(raw)
        if newer is not None:
            raise PlanError(
                f"the {LEDGER} annotation has format version {newer}, written by a newer "
                f"canary-routers (this one writes version {LEDGER_VERSION}); upgrade before "
                "planning this object",
                obj=obj,
            )
        return ledger

    def view(self, owner: str, adopt: Adopt | None = None) -> OwnerLedger:
        """This owner's view, with the ownerless entries ``adopt`` names moved to it."""
        mine: Entries = dict(self.owners.get(owner, {}))
        unowned: Entries = {}
        adopted: Entries = {}
        for key, value in self.unowned.items():
            if not isinstance(value, (list, dict)):  # a single value: adopted whole, or kept
                part = adopted if adopt is not None and adopt(key, str(value)) else unowned
                part[key] = value
                continue
            take = [n for n in value if adopt is not None and adopt(key, n)]
            keep = [n for n in value if n not in take]
            for part, names in ((adopted, take), (unowned, keep)):
                if names:
                    part[key] = {n: value[n] for n in names} if isinstance(value, dict) else names
        _merge(mine, adopted)
        others = {k: v for k, v in self.owners.items() if k != owner}
        return OwnerLedger(owner, _clean(mine), others, unowned, adopted, self)


@functools.lru_cache(maxsize=1024)
def _parsed(raw: str) -> tuple[int | None, Ledger]:
    """A ledger annotation's value, parsed once: one step reads the same ledger in targets(),
    plan() and observe() (eight times per TrafficSplit step). The Ledger returned is shared,
    so it is read-only, as every plan input is. ``(version, empty)`` when a newer
    canary-routers wrote it."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None, Ledger()  # not JSON: nothing anyone could have recorded
    if not isinstance(data, dict):
        return None, Ledger()
    version = data.get("v")
    if isinstance(version, int) and not isinstance(version, bool) and version > LEDGER_VERSION:
        return version, Ledger()
    owners: dict[str, Entries] = {}
    raw_owners = data.get("owners")
    if isinstance(raw_owners, Mapping):
        for name, entries in raw_owners.items():
            if isinstance(entries, Mapping) and _clean(entries):
                owners[str(name)] = _clean(entries)
    unowned: Entries = {}
    raw_unowned = data.get("unowned")
    if isinstance(raw_unowned, Mapping):
        _merge(unowned, raw_unowned)
    # Version 1 (ownerless), or fields an older canary-routers added next to "owners".
    _merge(unowned, {k: v for k, v in data.items() if k not in _RESERVED})
    return None, Ledger(owners, unowned)


def read_ledger(
    obj: Mapping[str, Any], owner: str, adopt: Adopt | None = None, *, what: str | None = None
) -> OwnerLedger:
    """Read ``obj``'s ledger as ``owner`` sees it (``adopt``: see :class:`Ledger.view`)."""
    return Ledger.of(obj, what=what).view(owner, adopt)


@dataclass(frozen=True)
class OwnerLedger:
    """One owner's view of an object's ledger: its entries, everyone else's, and the way to
    write its own back without touching theirs."""

    owner: str
    mine: Entries
    others: Mapping[str, Entries]
    unowned: Entries
    adopted: Entries
    """Ownerless entries this view took over (written under the owner by :meth:`write`)."""
    source: Ledger

    # -- reading -----------------------------------------------------------------------------

    def names(self, key: str) -> list[str]:
        """This owner's names in field ``key``."""
        return _names(self.mine.get(key))

    def data(self, key: str) -> dict[str, Any]:
        """This owner's mapping-valued field ``key``."""
        value = self.mine.get(key)
        return dict(value) if isinstance(value, Mapping) else {}

    def held(self, *keys: str) -> dict[str, str]:
        """Names in the fields ``keys`` that someone else holds -> who (an owner, or
        :data:`~routers.errors.LEGACY_HOLDER` for ownerless entries)."""
        out: dict[str, str] = {}
        for owner, entries in sorted(self.others.items()):
            for key in keys:
                for name in _names(entries.get(key)):
                    out.setdefault(name, owner)
        for key in keys:
            for name in _names(self.unowned.get(key)):
                out.setdefault(name, LEGACY_HOLDER)
        return out

    def foreign(self, key: str) -> dict[str, Any]:
        """Mapping-valued field ``key`` of everyone else (other owners and ownerless entries)."""
        out: dict[str, Any] = {}
        for entries in [*(v for _, v in sorted(self.others.items())), self.unowned]:
            value = entries.get(key)
            if isinstance(value, Mapping):
                for name, data in value.items():
                    out.setdefault(str(name), data)
        return out

    def everyone(self, key: str) -> set[str]:
        """Names in field ``key`` that anyone holds, this owner included."""
        return set(self.names(key)) | set(self.held(key))

    @property
    def shared(self) -> bool:
        """Whether anyone else has entries here (so an object we created must stay)."""
        return bool(self.others) or bool(self.unowned)

    def claim(
        self,
        key: str | tuple[str, ...],
        names: Iterable[str],
        *,
        what: Callable[[str], str],
        plugin: str | None = None,
        obj: str | None = None,
        hint: str | None = None,
    ) -> None:
        """Refuse (OwnershipConflictError) when someone else holds one of ``names`` in the
        field(s) ``key``."""
        held = self.held(*((key,) if isinstance(key, str) else key))
        for name in names:
            holder = held.get(name)
            if holder is not None:
                raise OwnershipConflictError(
                    what(name), owner=self.owner, holder=holder, plugin=plugin, obj=obj, hint=hint
                )

    def splitter(self, present: Collection[str]) -> str | None:
        """Another owner whose split (both its stable and its canary) is among ``present``."""
        for owner, entries in sorted(self.others.items()):
            split = entries.get(SPLIT)
            if isinstance(split, Mapping) and {split.get("stable"), split.get("canary")} <= set(
                present
            ):
                return owner
        return None

    def claim_split(
        self,
        present: Collection[str],
        *,
        what: str,
        plugin: str | None = None,
        obj: str | None = None,
    ) -> None:
        """Refuse to weight a route that carries another owner's stable and canary."""
        holder = self.splitter(present)
        if holder is not None:
            raise OwnershipConflictError(
                f"the weights of {what}",
                owner=self.owner,
                holder=holder,
                plugin=plugin,
                obj=obj,
                hint="it carries that owner's stable and canary destinations; one route's "
                "weights are one owner's decision: give each app its own route",
            )

    # -- writing -----------------------------------------------------------------------------

    def document(self, entries: Mapping[str, Any]) -> str | None:
        """The annotation value with this owner's entries replaced (None: no ledger left)."""
        owners = {k: v for k, v in self.others.items() if v}
        mine = _clean(entries)
        if mine:
            owners[self.owner] = mine
        if not owners and not self.unowned:
            return None
        doc: dict[str, Any] = {"owners": owners, "v": LEDGER_VERSION}
        if self.unowned:
            doc["unowned"] = self.unowned
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def changes(self, entries: Mapping[str, Any]) -> bool:
        return _clean(entries) != self.mine or bool(self.adopted)

    def write(self, builder: PatchBuilder, entries: Mapping[str, Any]) -> None:
        """Record ``entries`` as this owner's, keeping every other owner's and the ownerless ones.

        Nothing is written when this owner's entries did not change (and nothing was adopted).
        The write is guarded by a ``test`` of the annotation as read, so a concurrent writer's
        ledger is never overwritten, even when the cluster layer drops the resourceVersion
        guard under contention.
        """
        if not self.changes(entries):
            return
        value = self.document(entries)
        if builder.get(_PATH, None) == value:
            return
        if builder.exists(_PATH):
            builder.test(_PATH)
        elif isinstance(builder.get(_ANNOTATIONS, None), Mapping):
            builder.test_absent(_PATH)
        else:
            builder.test_absent(_ANNOTATIONS)
        if value is not None:
            builder.set(_PATH, value)
            return
        # The API server drops an empty annotations map; so do we, or offline and server differ.
        if builder.remove(_PATH) and builder.get(_ANNOTATIONS, None) == {}:
            builder.remove(_ANNOTATIONS)

    def annotation(self, entries: Mapping[str, Any]) -> dict[str, str]:
        """``{LEDGER: value}`` for the body of an object being created (empty when no ledger)."""
        value = self.document(entries)
        return {} if value is None else {LEDGER: value}


def split_entry(stable: str, canary: str) -> dict[str, str]:
    """The :data:`SPLIT` entry of an owner weighting ``stable`` and ``canary`` (plugin keys)."""
    return {"stable": stable, "canary": canary}


def empty_ledger(owner: str) -> OwnerLedger:
    """The view of an object that does not exist yet (for bodies of objects we create)."""
    return Ledger().view(owner)
