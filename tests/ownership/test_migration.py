"""Objects written by main (5ad0360; traefik a152e83) with ownerless ledgers (legacy/*/legacy.yaml)
keep working: nothing in them is dropped, each entry is adopted by the owner whose config or
state names it, and entries nobody names survive every other owner's writes."""

from __future__ import annotations

import json

import pytest

from routers.model import Cleanup
from routers.planning.ownership import LEDGER, Ledger
from tests.ownership.owners import (
    World,
    config,
    entries,
    http_names,
    objects,
    state,
    without_ledger,
)
from tests.ownership.test_shared_objects import _no_hashes

LEGACY = ("istio", "gatewayapi", "nginx", "smi", "nginx-mirror", "smi-created", "traefik")
SHARED = ("istio", "gatewayapi", "nginx", "smi")


def legacy_ledgers(world: World) -> dict[str, dict[str, object]]:
    out = {}
    for ref, obj in world.objects.items():
        raw = (obj["metadata"].get("annotations") or {}).get(LEDGER)
        if raw:
            out[f"{ref.kind}/{ref.name}"] = json.loads(raw)
    return out


def _names(value: object) -> list[str]:
    """Entries as names: a list or mapping's, or a single value (written as a list now)."""
    if isinstance(value, (dict, list)):
        return sorted(value)
    return [str(value)]


def test_the_inputs_really_are_ownerless() -> None:
    for target in LEGACY:
        ledgers = legacy_ledgers(World(objects(target, "legacy.yaml")))
        assert ledgers, target
        assert all("owners" not in book for book in ledgers.values()), target


@pytest.mark.parametrize("target", LEGACY)
def test_the_owner_replanning_its_state_only_files_its_entries_under_itself(target: str) -> None:
    world = World(objects(target, "legacy.yaml"))
    before = {r: without_ledger(o) for r, o in world.objects.items()}
    old = legacy_ledgers(world)
    world.run(config(target, "a"), state(target, "a"))
    after = {r: without_ledger(o) for r, o in world.objects.items()}
    assert after == before, "re-planning the same state changed more than the ledger"
    owner = config(target, "a").owner_key()
    for name, book in old.items():
        kind, _, obj_name = name.partition("/")
        mine = entries(world.get(kind, obj_name), owner)
        for key, value in book.items():
            assert key in mine, (name, key)
            assert _names(mine[key]) == _names(value), (name, key)
        assert not Ledger.of(world.get(kind, obj_name)).unowned, name
    assert all(p.empty for p in world.plan(config(target, "a"), state(target, "a")))


@pytest.mark.parametrize("target", LEGACY)
def test_cleanup_of_objects_written_by_main_restores_the_original(target: str) -> None:
    world = World(objects(target, "legacy.yaml"))
    read = set(world.objects)  # legacy.yaml holds what main's plan read and wrote
    world.run(config(target, "a"), Cleanup())
    original = {r: o for r, o in World(objects(target)).snapshot().items() if r in read}
    assert _no_hashes(world.snapshot()) == _no_hashes(original)


@pytest.mark.parametrize("target", SHARED)
def test_another_owner_on_objects_written_by_main_loses_nothing(target: str) -> None:
    world = World(objects(target, "legacy.yaml"))
    old = legacy_ledgers(world)
    world.run(config(target, "b"), state(target, "b"))
    # a's ownerless entries are still there, still ownerless (b's config names none of them).
    for name, book in old.items():
        kind, _, obj_name = name.partition("/")
        unowned = Ledger.of(world.get(kind, obj_name)).unowned
        assert {k: sorted(v) for k, v in unowned.items()} == {
            k: sorted(v) for k, v in book.items()
        }, name
    b_only = World(objects(target))
    b_only.run(config(target, "b"), state(target, "b"))
    # Then a adopts its entries, both clean up, in the other order too.
    world.run(config(target, "a"), state(target, "a"))
    world.run(config(target, "a"), Cleanup())
    assert _no_hashes(world.snapshot()) == _no_hashes(b_only.snapshot())
    world.run(config(target, "b"), Cleanup())
    assert _no_hashes(world.snapshot()) == _no_hashes(World(objects(target)).snapshot())


def test_istio_legacy_routes_are_recognised_by_their_canary_destination() -> None:
    """a's config has no managedRoutes: its routes are a's because they send to a's canary."""
    world = World(objects("istio", "legacy.yaml"))
    world.run(config("istio", "b"), state("istio", "b"))
    names = http_names(world.get("VirtualService", "shop"))
    assert names == ["a-header", "a-mirror", "a-primary", "b-header", "b-primary", "rest"]
    world.run(config("istio", "a"), Cleanup())
    assert http_names(world.get("VirtualService", "shop")) == [
        "a-primary",
        "b-header",
        "b-primary",
        "rest",
    ]


def test_nginx_keeps_the_canary_ingress_an_older_version_named() -> None:
    """a's config names Rollout a, so a new canary Ingress would be Argo's a-shop-canary; the
    shop-canary main created for a is kept (no second canary for the same paths)."""
    world = World(objects("nginx", "legacy.yaml"))
    world.run(config("nginx", "a"), state("nginx", "a"))
    assert world.find("Ingress", "a-shop-canary") is None
    assert entries(world.get("Ingress", "shop"), "Rollout shop/a") == {
        "canaryIngress": ["shop-canary"],
        "service": ["a-stable"],
    }
    world.run(config("nginx", "b"), state("nginx", "b"))
    assert world.find("Ingress", "b-shop-canary") is not None
    world.run(config("nginx", "a"), Cleanup())
    assert world.find("Ingress", "shop-canary") is None


def test_nginx_a_second_owner_never_takes_the_old_canary_ingress() -> None:
    from routers.errors import OwnershipConflictError

    world = World(objects("nginx", "legacy.yaml"))
    plain_b = config("nginx", "b").model_copy(update={"rollout": None})
    with pytest.raises(OwnershipConflictError, match="canary Ingress shop-canary"):
        world.run(plain_b, state("nginx", "b"))
    # Same paths as the old canary Ingress, under another name: refused as well.
    twin = config("nginx", "b", stableService="a-stable", canaryService="a2-canary")
    with pytest.raises(OwnershipConflictError, match="canary Ingress shop-canary"):
        world.run(twin, state("nginx", "b"))


@pytest.mark.parametrize("target", LEGACY)
def test_verify_and_status_keep_working_on_objects_written_by_main(target: str) -> None:
    """Right after an upgrade, before any new write: the owner still sees its routes."""
    from routers.contract import ClusterFacts
    from routers.engine import bind, gather, observe_all, verify
    from routers.planning.objects import LiveObjects

    world = World(objects(target, "legacy.yaml"))
    cfg = config(target, "a")
    bindings = bind(cfg)
    live = gather(bindings, LiveObjects(world.objects.items()).get)
    report = verify(
        bindings, observe_all(bindings, live, ClusterFacts()), state(target, "a"), ClusterFacts()
    )
    assert report.ok, report.mismatches
