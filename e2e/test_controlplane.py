"""Smoke tests for the real local control plane and the official CRD sets it installs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import FOREIGN_USER, LIMITED_USER, ROUTERS_USER, ControlPlane

pytestmark = pytest.mark.e2e

PlaneFactory = Callable[..., ControlPlane]

STRICT = {"fieldValidation": "Strict"}


def _create(
    cp: ControlPlane,
    group_version: str,
    plural: str,
    ns: str,
    obj: dict[str, Any],
    user: str = "admin",
) -> tuple[int, dict[str, Any]]:
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return cp.request("POST", f"{prefix}/namespaces/{ns}/{plural}", obj, user=user, params=STRICT)


def _assert_unknown_field_rejected(status: int, body: object, field: str) -> None:
    assert status in (400, 422), (status, body)
    msg = json.dumps(body)
    assert "unknown field" in msg, msg
    assert field in msg, msg


def _virtual_service(
    name: str, ns: str, extra_http: dict[str, Any] | None = None
) -> dict[str, Any]:
    route = {
        "route": [
            {"destination": {"host": "app", "subset": "stable"}, "weight": 90},
            {"destination": {"host": "app", "subset": "canary"}, "weight": 10},
        ]
    }
    route.update(extra_http or {})
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": ["app"], "http": [route]},
    }


def _http_route(name: str, ns: str, rule_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    rule = {
        "backendRefs": [
            {"name": "app-stable", "port": 80, "weight": 90},
            {"name": "app-canary", "port": 80, "weight": 10},
        ]
    }
    rule.update(rule_extra or {})
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]},
    }


def _traffic_split(
    version: str,
    name: str,
    ns: str,
    weights: tuple[object, object] = (90, 10),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec = {
        "service": "app",
        "backends": [
            {"service": "app-stable", "weight": weights[0]},
            {"service": "app-canary", "weight": weights[1]},
        ],
    }
    spec.update(extra or {})
    return {
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


# ------------------------------------------------------------------------------ basics


def test_version_and_users(control_plane: PlaneFactory) -> None:
    cp = control_plane(())
    v = cp.version()
    assert re.fullmatch(r"v1\.34\.\d+", v["gitVersion"]), v
    assert (v["major"], v["minor"]) == ("1", "34")
    client = json.loads(cp.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == v["gitVersion"]
    assert cp.kubeconfig.is_file()
    assert cp.server.startswith("https://127.0.0.1:")

    ns = cp.new_namespace()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps", user=LIMITED_USER)[0] == 403
    assert _create(cp, "v1", "configmaps", ns, cm, user=LIMITED_USER)[0] == 403
    assert _create(cp, "v1", "configmaps", ns, cm, user=FOREIGN_USER)[0] == 201
    cm2 = {**cm, "metadata": {"name": "d"}}
    assert _create(cp, "v1", "configmaps", ns, cm2, user=ROUTERS_USER)[0] == 201
    # per-user kubeconfig files select the user through current-context
    who = cp.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == "admin"
    r = subprocess.run(
        [
            str(cp.kubectl_bin),
            f"--kubeconfig={cp.kubeconfig_for(LIMITED_USER)}",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert r.stdout == LIMITED_USER
    # kubectl contexts per user work too
    denied = cp.kubectl("get", "configmaps", "-n", ns, user=LIMITED_USER, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    names = cp.kubectl("get", "configmaps", "-n", ns, "-o", "name", user=FOREIGN_USER).stdout
    assert "configmap/c" in names.split()


def test_audit_counts_write_requests(control_plane: PlaneFactory) -> None:
    cp = control_plane(())
    ns = cp.new_namespace()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}
    mark = cp.audit_mark()
    assert _create(cp, "v1", "configmaps", ns, cm)[0] == 201
    cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/a")
    writes = cp.write_requests(since=mark, namespace=ns)
    assert [(e["verb"], e["objectRef"]["resource"], e["user"]["username"]) for e in writes] == [
        ("create", "configmaps", "admin")
    ], cp.summarize(writes)
    reads = cp.audit_events(since=mark, namespace=ns, verbs={"get"})
    assert len(reads) == 1

    # "Nothing changed" must be decided client-side: a server-side apply of an identical
    # object is still a PATCH request and is counted as a write.
    manifest = json.dumps({**cm, "metadata": {"name": "b", "namespace": ns}})
    for _ in range(2):
        cp.kubectl("apply", "--server-side", "--field-manager=t", "-f", "-", input=manifest)
    mark2 = cp.audit_mark()
    cp.kubectl("apply", "--server-side", "--field-manager=t", "-f", "-", input=manifest)
    assert [e["verb"] for e in cp.write_requests(since=mark2, name="b")] == ["patch"]
    mark3 = cp.audit_mark()
    cp.kubectl("get", "configmap", "b", "-n", ns)
    assert cp.write_requests(since=mark3) == []


# ------------------------------------------------------------------------------ CRD sets


def test_istio_crds_strict(control_plane: PlaneFactory) -> None:
    cp = control_plane(("istio",))
    ns = cp.new_namespace()
    assert (
        _create(cp, "networking.istio.io/v1", "virtualservices", ns, _virtual_service("vs", ns))[0]
        == 201
    )
    status, body = _create(
        cp,
        "networking.istio.io/v1",
        "virtualservices",
        ns,
        _virtual_service("vs-bad", ns, {"bogusField": 1}),
    )
    _assert_unknown_field_rejected(status, body, "bogusField")
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "dr", "namespace": ns},
        "spec": {
            "host": "app",
            "subsets": [
                {"name": "stable", "labels": {"v": "1"}},
                {"name": "canary", "labels": {"v": "2"}},
            ],
        },
    }
    assert _create(cp, "networking.istio.io/v1", "destinationrules", ns, dr)[0] == 201
    # kubectl's strict validation path too
    bad = _virtual_service("vs-bad2", ns, {"bogusField": 1})
    r = cp.kubectl("create", "--validate=strict", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0
    assert "bogusField" in r.stderr, r.stderr
    # the limited user cannot touch them
    assert (
        cp.request(
            "GET",
            f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices",
            user=LIMITED_USER,
        )[0]
        == 403
    )


def test_gateway_standard_v16(control_plane: PlaneFactory) -> None:
    cp = control_plane(("gateway-standard-v1.6",))
    ns = cp.new_namespace()
    gv = "gateway.networking.k8s.io/v1"
    assert (
        _create(cp, gv, "httproutes", ns, _http_route("named", ns, {"name": "canary-rule"}))[0]
        == 201
    )
    status, body = _create(cp, gv, "httproutes", ns, _http_route("bad", ns, {"bogus": True}))
    _assert_unknown_field_rejected(status, body, "bogus")
    # CEL / schema validation is live: weight must be >= 0
    bad_weight = _http_route("neg", ns)
    bad_weight["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    assert _create(cp, gv, "httproutes", ns, bad_weight)[0] == 422
    grpc = {
        "apiVersion": gv,
        "kind": "GRPCRoute",
        "metadata": {"name": "g", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "app", "port": 50051}]}],
        },
    }
    assert _create(cp, gv, "grpcroutes", ns, grpc)[0] == 201
    crd = cp.request(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "httproutes.gateway.networking.k8s.io",
    )[1]
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"].startswith(
        "v1.6."
    )
    assert cp.request("GET", "/apis/gateway.networking.x-k8s.io")[0] == 404
    assert _create(cp, gv, "httproutes", ns, _http_route("x", ns), user=LIMITED_USER)[0] == 403


def test_gateway_standard_v12_lacks_rule_name(control_plane: PlaneFactory) -> None:
    cp = control_plane(("gateway-standard-v1.2",))
    ns = cp.new_namespace()
    gv = "gateway.networking.k8s.io/v1"
    assert _create(cp, gv, "httproutes", ns, _http_route("plain", ns))[0] == 201
    status, body = _create(
        cp, gv, "httproutes", ns, _http_route("named", ns, {"name": "canary-rule"})
    )
    _assert_unknown_field_rejected(status, body, "name")
    crd = cp.request(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "httproutes.gateway.networking.k8s.io",
    )[1]
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"].startswith(
        "v1.2."
    )


def test_gateway_experimental_v16(control_plane: PlaneFactory) -> None:
    cp = control_plane(("gateway-experimental-v1.6",))
    ns = cp.new_namespace()
    crd = cp.request(
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        "httproutes.gateway.networking.k8s.io",
    )[1]
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "experimental"
    assert cp.request("GET", "/apis/gateway.networking.x-k8s.io")[0] == 200
    assert (
        _create(
            cp,
            "gateway.networking.k8s.io/v1",
            "httproutes",
            ns,
            _http_route("r", ns, {"name": "canary-rule"}),
        )[0]
        == 201
    )


def test_smi_linkerd(control_plane: PlaneFactory) -> None:
    cp = control_plane(("smi-linkerd",))
    ns = cp.new_namespace()
    assert (
        _create(
            cp,
            "split.smi-spec.io/v1alpha2",
            "trafficsplits",
            ns,
            _traffic_split("v1alpha2", "ts", ns),
        )[0]
        == 201
    )
    # v1alpha1 (storage) takes int-or-string weights, e.g. quantities
    assert (
        _create(
            cp,
            "split.smi-spec.io/v1alpha1",
            "trafficsplits",
            ns,
            _traffic_split("v1alpha1", "ts1", ns, weights=("900m", "100m")),
        )[0]
        == 201
    )
    status, body = _create(
        cp,
        "split.smi-spec.io/v1alpha2",
        "trafficsplits",
        ns,
        _traffic_split("v1alpha2", "bad", ns, extra={"bogus": 1}),
    )
    _assert_unknown_field_rejected(status, body, "bogus")
    # linkerd-smi serves no v1alpha3/v1alpha4 and no spec.matches
    status, body = _create(
        cp,
        "split.smi-spec.io/v1alpha2",
        "trafficsplits",
        ns,
        _traffic_split(
            "v1alpha2", "m", ns, extra={"matches": [{"kind": "HTTPRouteGroup", "name": "x"}]}
        ),
    )
    _assert_unknown_field_rejected(status, body, "matches")
    assert cp.request("GET", "/apis/split.smi-spec.io/v1alpha4")[0] == 404


def test_smi_sdk(control_plane: PlaneFactory) -> None:
    cp = control_plane(("smi-sdk",))
    ns = cp.new_namespace()
    group = {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "canary-header", "namespace": ns},
        "spec": {"matches": [{"name": "h", "headers": [{"x-canary": "true"}]}]},
    }
    assert _create(cp, "specs.smi-spec.io/v1alpha4", "httproutegroups", ns, group)[0] == 201
    ts = _traffic_split(
        "v1alpha4",
        "ts",
        ns,
        extra={"matches": [{"kind": "HTTPRouteGroup", "name": "canary-header"}]},
    )
    assert _create(cp, "split.smi-spec.io/v1alpha4", "trafficsplits", ns, ts)[0] == 201
    status, body = _create(
        cp,
        "split.smi-spec.io/v1alpha4",
        "trafficsplits",
        ns,
        _traffic_split("v1alpha4", "bad", ns, extra={"bogus": 1}),
    )
    _assert_unknown_field_rejected(status, body, "bogus")
    bad_kind = _traffic_split(
        "v1alpha4", "bk", ns, extra={"matches": [{"kind": "Nope", "name": "x"}]}
    )
    assert _create(cp, "split.smi-spec.io/v1alpha4", "trafficsplits", ns, bad_kind)[0] == 422


def test_conflicting_sets_rejected(control_plane: PlaneFactory) -> None:
    with pytest.raises(ValueError, match="both define"):
        control_plane(("gateway-standard-v1.6", "gateway-experimental-v1.6"))


# ------------------------------------------------------------------------------ lifecycle


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (p / "stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmd and state != "Z":
            found.append(int(p.name))
    return found


def test_stop_leaves_no_process(control_plane_bin_dir: Path) -> None:
    cp = ControlPlane((), bin_dir=control_plane_bin_dir, audit=False)
    cp.start()
    state_dir = str(cp.state_dir)
    pids = cp.pids()
    assert set(pids) == {"etcd", "kube-apiserver"}
    assert _processes_mentioning(state_dir)
    cp.stop()
    assert not cp.running
    for name, pid in pids.items():
        assert not _alive(pid), f"{name} ({pid}) still alive"
    assert _processes_mentioning(state_dir) == []
    assert not Path(state_dir).exists()


def test_cli_up_down(control_plane_bin_dir: Path, tmp_path: Path) -> None:
    env = dict(os.environ, ROUTERS_E2E_BIN_DIR=str(control_plane_bin_dir))
    root = Path(__file__).resolve().parent.parent
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "e2e.cluster"]
    up = subprocess.run(
        [*cmd, "up", "--crds", "istio", "--state-dir", str(state)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = up.stdout.strip().splitlines()[-1]
        info = json.loads((state / "cluster.json").read_text())
        assert info["kubeconfig"] == kubeconfig
        kubectl = str(Path(info["bin_dir"]) / "kubectl")
        got = subprocess.run(
            [
                kubectl,
                f"--kubeconfig={kubeconfig}",
                "get",
                "crd",
                "virtualservices.networking.istio.io",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.returncode == 0, got.stderr
        pids = [*info["pids"].values(), info["pid"]]
    finally:
        down = subprocess.run(
            [*cmd, "down", "--state-dir", str(state)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    assert not (state / "pid").exists()
