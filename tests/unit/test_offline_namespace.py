"""Issue 12: ``routers plan -f`` without ``-n`` finds the namespace the way a user expects.

From the config (or the Rollout it is); else from the manifest objects the targets name, when
they share one namespace; else from the manifests when all their objects share one. When it is
still ambiguous, the error says where the object *was* found and which flag fixes it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from routers.cli import main
from routers.engine import offline_namespace, plan_offline
from routers.errors import TargetNotFoundError
from routers.io import load_documents, load_one
from routers.model import RoutingConfig, TrafficState
from routers.testing import rollout_document
from tests.conftest import ROOT

EX = ROOT / "examples" / "istio"


def routing_without_namespace() -> dict[str, Any]:
    doc = dict(load_one(str(EX / "routing.yaml")))
    doc.pop("namespace")
    return doc


def write(tmp_path: Path, name: str, docs: list[Any]) -> str:
    p = tmp_path / name
    p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(p)


def test_plan_without_n_takes_the_namespace_the_manifests_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, "routing.yaml", [routing_without_namespace()])
    args = ["plan", "--config", config, "--state", str(EX / "state.yaml")]
    assert main([*args, "-f", str(EX / "live.yaml"), "-o", "patch"]) == 0
    out = capsys.readouterr()
    assert "namespace: shop (from the target objects in the manifests)" in out.err
    assert '"namespace": "shop"' in out.out


def test_the_namespace_of_every_object_is_used_when_no_target_is_among_them() -> None:
    config = RoutingConfig.from_document(routing_without_namespace())
    others = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "a"}}]
    assert offline_namespace(config, others) == ("a", "the manifests (all their objects share it)")
    assert offline_namespace(config, [*others, _ns("b", others[0])])[0] == "default"


def test_a_rollout_supplies_its_namespace() -> None:
    rollout = rollout_document(routing_without_namespace(), name="checkout", namespace="payments")
    config = RoutingConfig.from_document(rollout)
    assert offline_namespace(config, load_documents([str(EX / "live.yaml")])) == (
        "payments",
        "config",
    )


def test_ambiguous_namespace_error_says_where_the_object_is_and_which_flag_fixes_it() -> None:
    live = load_documents([str(EX / "live.yaml")])
    copies = [_ns("team-b", d) for d in live]
    config = RoutingConfig.from_document(routing_without_namespace())
    with pytest.raises(TargetNotFoundError) as info:
        plan_offline(config, TrafficState(weight=10), [*live, *copies])
    text = str(info.value)
    assert "default/checkout" in text  # where it was looked for
    assert "VirtualService.networking.istio.io shop/checkout" in text
    assert "VirtualService.networking.istio.io team-b/checkout" in text
    assert "pass -n with one of shop, team-b (--namespace)" in text


def test_a_single_other_namespace_is_named_with_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Objects of several namespaces: the target is only in one, but a DestinationRule of the
    same name elsewhere makes the target set ambiguous; the error names the fix."""
    live = load_documents([str(EX / "live.yaml")])
    stray = _ns("team-b", next(d for d in live if d["kind"] == "DestinationRule"))
    config = write(tmp_path, "routing.yaml", [routing_without_namespace()])
    files = write(tmp_path, "live.yaml", [*live, stray])
    code = main(["plan", "--config", config, "--state", str(EX / "state.yaml"), "-f", files])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "VirtualService.networking.istio.io default/checkout was looked for in namespace default, "
        "but the manifests hold VirtualService.networking.istio.io shop/checkout: pass -n shop "
        "(--namespace) or set namespace: shop in the config"
    ) in err


def _ns(namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["metadata"]["namespace"] = namespace
    return out
