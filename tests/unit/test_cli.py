"""The offline main job through the real CLI entry (exit codes, stdout/stderr split)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from routers.cli import main
from routers.registry import Registry
from tests.conftest import THIRDPARTY

EX = THIRDPARTY / "example"
BASE = ["plan", "--config", str(EX / "routing.yaml"), "-f", str(EX / "live.yaml")]


@pytest.fixture(autouse=True)
def _registry(cm_registry: Registry, default_registry_is: Callable[[Registry], None]) -> None:
    default_registry_is(cm_registry)


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_plan_yaml_prints_resulting_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--state", str(EX / "state.yaml")]) == 0
    out = capsys.readouterr()
    (obj,) = list(yaml.safe_load_all(out.out))
    assert json.loads(obj["data"]["weights.json"]) == {"web-canary": 20, "web-stable": 80}
    assert out.err == ""


def test_plan_patch_prints_guarded_operations(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--state", str(EX / "state.yaml"), "-o", "patch"]) == 0
    (op,) = json.loads(capsys.readouterr().out)
    assert op["verb"] == "patch"
    assert op["patch"][0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}


def test_plan_json_is_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--state", str(EX / "state.yaml"), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "List"


def test_no_change_says_so_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([*BASE, "--state", str(EX / "state.yaml")])
    after = write(tmp_path, "after.yaml", capsys.readouterr().out)
    args = [
        "plan",
        "--config",
        str(EX / "routing.yaml"),
        "-f",
        after,
        "--state",
        str(EX / "state.yaml"),
    ]
    assert main(args) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert "no changes" in out.err


def test_config_error_exit_1_one_line_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = write(tmp_path, "s.yaml", "weight: 120\n")
    assert main([*BASE, "--state", state]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {state}: weight 120 is above total 100\n")
    assert "Traceback" not in err


def test_unsupported_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = write(tmp_path, "s.yaml", "headerRoutes: [{name: h, matches: [{method: GET}]}]\n")
    assert main([*BASE, "--state", state]) == 2
    assert "not supported" in capsys.readouterr().err


def test_usage_error_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config", str(EX / "routing.yaml")]) == 1
    assert "Missing option" in capsys.readouterr().err


def test_duplicate_yaml_keys_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = write(tmp_path, "s.yaml", "weight: 10\nweight: 90\n")
    assert main([*BASE, "--state", state]) == 1
    assert "duplicate key 'weight'" in capsys.readouterr().err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--state", "/nonexistent/state.yaml"]) == 1
    assert "cannot read file" in capsys.readouterr().err


def test_plugins_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "list", "-o", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["name"], row["distribution"], row["status"]) == (
        "configmap",
        "routers-example-configmap",
        "loaded",
    )
    assert row["capabilities"]["headerRoutes"] is False


def test_plugins_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "list"]) == 0
    assert "routers-example-configmap" in capsys.readouterr().out


@pytest.mark.parametrize("what", ["state", "config", "instruction"])
def test_schema(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", what]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema


def test_schema_state_uses_wire_names(capsys: pytest.CaptureFixture[str]) -> None:
    main(["schema", "state"])
    props = json.loads(capsys.readouterr().out)["properties"]
    assert {"weight", "total", "headerRoutes", "mirrorRoutes", "additionalDestinations"} <= set(
        props
    )


def test_cleanup_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--cleanup", "-o", "patch"]) == 0
    (op,) = json.loads(capsys.readouterr().out)
    assert op["verb"] == "patch"  # not ours: restore 100% to stable, never delete


def test_explain_offline_with_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "explain",
                "--config",
                str(EX / "routing.yaml"),
                "--state",
                str(EX / "state.yaml"),
                "-f",
                str(EX / "live.yaml"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wanted: send 20/100 of unmatched traffic to web-canary" in out
    assert "will patch ConfigMap shop/proxy-weights: set weights" in out
    assert "limit: no header-based routing" in out


def test_explain_says_what_cannot_be_expressed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = write(tmp_path, "s.yaml", "headerRoutes: [{name: h, matches: [{method: GET}]}]\n")
    assert main(["explain", "--config", str(EX / "routing.yaml"), "--state", state]) == 2
    assert (
        "cannot express: setHeaderRoute 'h': header-based routing is not supported"
        in capsys.readouterr().out
    )


def test_status_renderers() -> None:
    from rich.console import Console

    from routers.cli import _render
    from routers.contract import Condition, Observation, ObservedWeights

    obs = [
        Observation(
            "gatewayapi",
            weights=(ObservedWeights("HTTPRoute shop/web rules[0]", 80, 20),),
            header_routes=("canary-header",),
            mirror_routes={"shadow": 12.5},
            ready=False,
            conditions=(
                Condition("HTTPRoute shop/web", "Accepted", "True", "Accepted"),
                Condition(
                    "HTTPRoute shop/web", "ResolvedRefs", "False", "BackendNotFound", current=False
                ),
            ),
        )
    ]
    table = _render.observations_table(obs)
    assert "20/100 (20%)" in table
    assert "canary-header,shadow(mirror 12.5%)" in table
    conds = _render.conditions_table(obs)
    assert "BackendNotFound" in conds
    assert "STALE generation" in conds
    console = Console(record=True, width=200)
    console.print(_render._rich_status(obs))
    text = console.export_text()
    assert "shadow (mirror 12.5%)" in text
    assert "False (stale)" in text


def test_rbac_binds_a_service_account(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(EX / "routing.yaml")
    args = [
        "rbac",
        "--config",
        cfg,
        "-n",
        "shop",
        "--service-account",
        "argo-rollouts/argo-rollouts",
    ]
    assert main(args) == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}
    subject = {"kind": "ServiceAccount", "name": "argo-rollouts", "namespace": "argo-rollouts"}
    binding = docs["RoleBinding"]
    assert binding["metadata"]["namespace"] == "shop"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs["Role"]["metadata"]["name"],
    }
    assert binding["subjects"] == [subject]
    if "ClusterRole" in docs:
        assert docs["ClusterRoleBinding"]["subjects"] == [subject]
        assert (
            docs["ClusterRoleBinding"]["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
        )


def test_rbac_service_account_needs_namespace_and_name(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(EX / "routing.yaml")
    assert main(["rbac", "--config", cfg, "--service-account", "argo-rollouts"]) == 1
    assert "'argo-rollouts' is not NAMESPACE/NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("2.5", 2.5), ("30s", 30.0), ("2m", 120.0), ("1m30s", 90.0), ("500ms", 0.5)],
)
def test_request_timeout_reads_kubectl_durations(text: str, seconds: float) -> None:
    from routers.cli._app import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0", "more than 0"),
        ("soon", "not a duration"),
        ("inf", "not a duration"),
        ("nan", "not a duration"),
        ("1e999", "not a duration"),
    ],
)
def test_request_timeout_must_be_a_positive_duration(
    value: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["status", "--config", str(EX / "routing.yaml"), "--request-timeout", value]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--request-timeout" in err and why in err


def test_request_timeout_bounds_every_cluster_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An API server that accepts and never answers: `status --request-timeout 1s` fails in
    seconds (3 bounded attempts of a GET), with exit 3 and the server named, never a hang."""
    import time

    from tests.conftest import silent_server

    with silent_server() as port:
        kubeconfig = write(
            tmp_path,
            "kubeconfig",
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            ),
        )
        start = time.monotonic()
        code = main(
            [
                "status",
                "--config",
                str(EX / "routing.yaml"),
                "--kubeconfig",
                kubeconfig,
                "--request-timeout",
                "1s",
            ]
        )
        took = time.monotonic() - start
    assert code == 3
    err = capsys.readouterr().err
    assert f"cannot reach the API server at http://127.0.0.1:{port} after 3 attempts" in err
    assert 3.0 <= took < 30, took  # 3 reads of 1 s + 1.5 s backoff; the default would be 195+ s


@pytest.mark.parametrize(("flag", "read"), [([], 30.0), (["--request-timeout", "45s"], 45.0)])
def test_argo_plugin_requests_stay_inside_the_bridges_call_limit(
    flag: list[str], read: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bridge gives a call 60 s: by default one request of the plugin gets 30 s."""
    import click

    import routers.cluster.connect

    seen: list[Any] = []

    def connect(*args: Any, timeouts: Any) -> Any:
        seen.append(timeouts)
        raise click.ClickException("stop here")

    monkeypatch.setattr(routers.cluster.connect, "connect", connect)
    assert main(["argo-plugin", "--plugin", "canary-routers/istio", *flag]) == 1
    assert [t.request for t in seen] == [(10.0, read)]


@pytest.mark.parametrize(
    ("flag", "env", "cached"),
    [([], None, False), (["--watch-cache"], None, True), ([], "1", True), ([], "0", False)],
)
def test_argo_plugin_serves_from_a_watch_cache_when_asked(
    flag: list[str], env: str | None, cached: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--watch-cache`` (or CANARY_ROUTERS_WATCH_CACHE, which the bridge's environment
    passes on): every Rollout's Router reads through one WatchCache, stopped when serving ends."""
    from kubernetes.client import ApiClient, Configuration

    import routers.argo
    import routers.cluster.connect
    from routers.cluster import Kube, Transport, WatchCache

    if env is not None:
        monkeypatch.setenv("CANARY_ROUTERS_WATCH_CACHE", env)
    kubes: list[Kube] = []

    def connect(*args: Any, timeouts: Any) -> Kube:
        kubes.append(
            Kube(Transport(ApiClient(Configuration(host="http://127.0.0.1:1")), timeouts=timeouts))
        )
        return kubes[-1]

    monkeypatch.setattr(routers.cluster.connect, "connect", connect)
    handlers: list[Any] = []

    def serve(handle: Any, **_: Any) -> int:
        handlers.append(handle.__self__)
        return 0

    monkeypatch.setattr(routers.argo, "serve", serve)
    assert main(["argo-plugin", "--plugin", "canary-routers/istio", *flag]) == 0
    (handler,) = handlers
    if not cached:
        assert handler.cache is None
        return
    assert isinstance(handler.cache, WatchCache)
    assert handler.cache.kube is kubes[0]
    assert handler.cache.timeouts.read == 30.0, "the plugin's request limit"
    assert handler.cache.stopped
