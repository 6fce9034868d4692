"""The CLI's cluster commands against a real API server (apply, diff, verify, status, cleanup, rbac)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from e2e.cluster import ControlPlane
from routers import registry as registry_mod
from routers.cli import main
from routers.registry import Registry
from tests.conftest import THIRDPARTY, entry

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _registry() -> Iterator[None]:
    sys.path.insert(0, str(THIRDPARTY))
    registry_mod._default = Registry(
        lambda: [entry("configmap", "routers_example_configmap:ConfigMapPlugin")], disabled=()
    )  # type: ignore[list-item]
    yield
    registry_mod._default = None
    sys.path.remove(str(THIRDPARTY))


@pytest.fixture
def setup(
    control_plane: Callable[..., ControlPlane], tmp_path: Path
) -> tuple[ControlPlane, list[str], Path]:
    cp = control_plane(())
    ns = cp.new_namespace("cli")
    cfg = tmp_path / "routing.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "stableService": "web-stable",
                "canaryService": "web-canary",
                "plugins": {"example.com/configmap": {"configMap": "proxy-weights"}},
            }
        )
    )
    common = ["--config", str(cfg), "--kubeconfig", str(cp.kubeconfig_for("routers")), "-n", ns]
    return cp, common, tmp_path


def state(tmp: Path, weight: int) -> str:
    p = tmp / f"s{weight}.yaml"
    p.write_text(f"weight: {weight}\n")
    return str(p)


def test_apply_diff_verify_status_cleanup(
    setup: tuple[ControlPlane, list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _cp, common, tmp = setup
    assert main(["diff", *common, "--state", state(tmp, 25)]) == 1
    assert "+  weights.json" in capsys.readouterr().out
    assert main(["apply", *common, "--state", state(tmp, 25), "--dry-run", "client"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["verb"] == "create"
    assert main(["apply", *common, "--state", state(tmp, 25), "--dry-run", "server"]) == 0
    assert "would create" in capsys.readouterr().err
    assert main(["verify", *common, "--state", state(tmp, 25)]) == 1
    capsys.readouterr()
    assert main(["apply", *common, "--state", state(tmp, 25)]) == 0
    assert "create: ConfigMap" in capsys.readouterr().err
    assert main(["apply", *common, "--state", state(tmp, 25)]) == 0
    assert "no changes" in capsys.readouterr().err
    assert main(["diff", *common, "--state", state(tmp, 25)]) == 0
    assert main(["verify", *common, "--state", state(tmp, 25)]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["status", *common, "-o", "json"]) == 0
    (obs,) = json.loads(capsys.readouterr().out)
    assert obs["weights"][0]["canary"] == 25
    assert main(["status", *common]) == 0
    assert "25/100 (25%)" in capsys.readouterr().out
    assert main(["cleanup", *common]) == 0
    assert "delete: ConfigMap" in capsys.readouterr().err


def test_diff_error_exit_code_is_above_1(
    setup: tuple[ControlPlane, list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, common, tmp = setup
    bad = tmp / "bad.yaml"
    bad.write_text("weight: 500\n")
    assert main(["diff", *common, "--state", str(bad)]) == 2
    assert "above total" in capsys.readouterr().err


def test_unreachable_cluster_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "routing.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "stableService": "a",
                "canaryService": "b",
                "plugins": {"x/configmap": {"configMap": "c"}},
            }
        )
    )
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "x",
                "clusters": [
                    {
                        "name": "x",
                        "cluster": {
                            "server": "https://127.0.0.1:1",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
                "users": [{"name": "x", "user": {"token": "t"}}],
            }
        )
    )
    code = main(
        ["apply", "--config", str(cfg), "--kubeconfig", str(kc), "--state", state(tmp_path, 5)]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: ")
    assert "Traceback" not in err


def test_rbac_prints_role(
    setup: tuple[ControlPlane, list[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, common, _ = setup
    cfg = common[1]
    assert main(["rbac", "--config", cfg, "-n", "shop"]) == 0
    (role,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert role["kind"] == "Role"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["create", "delete", "get", "patch"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "get", "patch"]},
    ]
    assert main(["rbac", "--config", cfg, "-n", "shop", "--no-events"]) == 0
    (role,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [r["resources"] for r in role["rules"]] == [["configmaps"]]
