"""`routers run` against a real API server: steps, pauses, promote, abort, and resume after the
run process dies and after the API server is killed and restarted mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import config as kube_config

from e2e.cluster import ControlPlane, LineReader
from routers.cluster import Kube, Router, Transport
from routers.cluster.run import PROGRESS, Event, RunAborted, Runner, send_command
from routers.model import RoutingConfig
from routers.model.steps import steps_from_document
from routers.registry import Registry
from tests.conftest import THIRDPARTY, configmap_registry

pytestmark = pytest.mark.e2e

CONFIG = {
    "stableService": "web-stable",
    "canaryService": "web-canary",
    "plugins": {"example.com/configmap": {"configMap": "proxy-weights"}},
}


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    yield from configmap_registry()


def router_for(cp: ControlPlane, ns: str, registry: Registry) -> Router:
    client = kube_config.new_client_from_config(config_file=str(cp.kubeconfig_for("routers")))
    config = RoutingConfig.from_document({**CONFIG, "namespace": ns})
    return Router(config, kube=Kube(Transport(client)), registry=registry)


def seed(cp: ControlPlane, ns: str) -> None:
    status, body = cp.request(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "proxy-weights"},
            "data": {"other": "keep"},
        },
    )
    assert status == 201, body


def canary(cp: ControlPlane, ns: str) -> int | None:
    _, obj = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    raw = (obj.get("data") or {}).get("weights.json")
    return json.loads(raw).get("web-canary", 0) if raw else None


def test_steps_pause_promote(
    control_plane: Callable[..., ControlPlane], registry: Registry
) -> None:
    cp = control_plane(())
    ns = cp.new_namespace("run")
    seed(cp, ns)
    steps, _ = steps_from_document(
        {
            "steps": [
                {"setWeight": 10},
                {"pause": {"duration": 1}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 100},
            ]
        }
    )
    events: list[Event] = []
    runner = Runner(router_for(cp, ns, registry), steps, on_event=events.append, poll=0.1)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not any(e.kind == "waiting" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert canary(cp, ns) == 50, "should be paused at 50%"
    assert send_command(router_for(cp, ns, registry), "promote")
    thread.join(30)
    assert not thread.is_alive(), "the run did not finish within 30s of the promote"
    assert canary(cp, ns) == 100
    kinds = [e.kind for e in events if e.kind not in ("pause", "waiting")]
    assert kinds == ["start", "step", "step", "step", "step", "step", "done"]


def test_abort_returns_to_stable(
    control_plane: Callable[..., ControlPlane], registry: Registry
) -> None:
    cp = control_plane(())
    ns = cp.new_namespace("abort")
    seed(cp, ns)
    steps, _ = steps_from_document({"steps": [{"setWeight": 30}, {"pause": {}}]})
    runner = Runner(router_for(cp, ns, registry), steps, poll=0.1)
    errors: list[BaseException] = []

    def go() -> None:
        try:
            runner.run()
        except RunAborted as exc:
            errors.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while canary(cp, ns) != 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    send_command(router_for(cp, ns, registry), "abort")
    thread.join(30)
    assert not thread.is_alive(), "the run did not stop within 30s of the abort"
    assert errors, "the run did not stop on abort"
    assert canary(cp, ns) == 0
    _, obj = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    assert PROGRESS not in (obj["metadata"].get("annotations") or {})


SCRIPT = """
import sys
sys.path.insert(0, {thirdparty!r})
from routers import registry as r
from routers.registry import Registry
from tests.conftest import entry
r._default = Registry(lambda: [entry("configmap", "routers_example_configmap:ConfigMapPlugin")], disabled=())
from routers.cli import main
sys.exit(main(sys.argv[1:]))
"""


class RunProcess:
    """A ``routers run`` subprocess whose output is read by a thread (``LineReader``), so no
    read can block: every wait has a deadline. The process is killed on ``close()``."""

    def __init__(self, cmd: list[str], *, cwd: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env
        )
        self.lines = LineReader(self.proc)
        self.seen: list[str] = []

    def wait_for_line(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(left)
            except TimeoutError:
                break
            if line is None:
                raise AssertionError(f"run exited before printing {text!r}:\n{self.output()}")
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout}s:\n{self.output()}")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"run did not exit within {timeout}s:\n{self.output(timeout=0)}"
            ) from None

    def output(self, timeout: float = 10) -> str:
        """Everything printed so far (after an exit: everything, once the reader is done)."""
        if self.proc.poll() is not None:
            self.lines.join(timeout)
        self.seen += self.lines.pending()
        return "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def close(self) -> None:
        self.kill()
        self.lines.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def launched() -> Iterator[list[RunProcess]]:
    started: list[RunProcess] = []
    yield started
    for run in started:
        run.close()


def start_run(
    launched: list[RunProcess], cp: ControlPlane, tmp: Path, steps_file: Path, cfg: Path, ns: str
) -> RunProcess:
    script = tmp / "run.py"
    script.write_text(SCRIPT.format(thirdparty=str(THIRDPARTY)))
    run = RunProcess(
        [
            sys.executable,
            str(script),
            "run",
            str(steps_file),
            "--config",
            str(cfg),
            "-n",
            ns,
            "--kubeconfig",
            str(cp.kubeconfig_for("routers")),
            "--poll",
            "0.1",
            "--api-timeout",
            "60",
        ],
        cwd=str(Path(__file__).resolve().parent.parent),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    launched.append(run)
    return run


def wait_for(pred: Callable[[], bool], timeout: float = 30, what: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what()}"
        time.sleep(0.05)


def test_resume_after_the_run_process_is_killed(
    control_plane: Callable[..., ControlPlane],
    registry: Registry,
    tmp_path: Path,
    launched: list[RunProcess],
) -> None:
    cp = control_plane(())
    ns = cp.new_namespace("resume")
    seed(cp, ns)
    cfg = tmp_path / "routing.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    steps = tmp_path / "steps.yaml"
    steps.write_text(
        yaml.safe_dump(
            {"steps": [{"setWeight": 10}, {"setWeight": 20}, {"pause": {}}, {"setWeight": 40}]}
        )
    )
    run = start_run(launched, cp, tmp_path, steps, cfg, ns)
    wait_for(lambda: canary(cp, ns) == 20)
    time.sleep(0.5)  # inside the indefinite pause
    run.kill()
    mark = cp.audit_mark()
    run = start_run(launched, cp, tmp_path, steps, cfg, ns)
    run.wait_for_line("paused until")
    # Resumed inside the pause: steps 1-2 are re-asserted with zero writes, the pause clock kept.
    writes = cp.write_requests(since=mark, user="routers")
    assert canary(cp, ns) == 20
    assert writes == [], cp.summarize(writes)
    send_command(router_for(cp, ns, registry), "promote")
    assert run.wait(30) == 0, run.output()
    assert canary(cp, ns) == 40


def test_resume_after_the_apiserver_is_killed_mid_run(
    control_plane: Callable[..., ControlPlane],
    registry: Registry,
    tmp_path: Path,
    launched: list[RunProcess],
) -> None:
    cp = control_plane(())
    ns = cp.new_namespace("crash")
    seed(cp, ns)
    cfg = tmp_path / "routing.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    steps = tmp_path / "steps.yaml"
    steps.write_text(
        yaml.safe_dump(
            {
                "steps": [
                    {"setWeight": 5},
                    {"pause": {"duration": 2}},
                    {"setWeight": 25},
                    {"pause": {"duration": 2}},
                    {"setWeight": 60},
                ]
            }
        )
    )
    run = start_run(launched, cp, tmp_path, steps, cfg, ns)
    wait_for(lambda: canary(cp, ns) == 5)
    cp.kill_apiserver()
    time.sleep(3)  # the run keeps retrying while the API server is down
    cp.start_apiserver()
    assert run.wait(90) == 0, run.output()
    assert canary(cp, ns) == 60
    assert "retrying" in run.output()


def test_two_owners_runs_on_one_object_survive_an_apiserver_kill(
    control_plane: Callable[..., ControlPlane],
    registry: Registry,
    tmp_path: Path,
    launched: list[RunProcess],
) -> None:
    """Two apps' runs share the holder object (one ConfigMap, a key each): the API server is
    killed mid-run, both resume and finish, each with its own progress; a promote for one
    never reaches the other."""
    cp = control_plane(())
    ns = cp.new_namespace("owners")
    seed(cp, ns)
    runs = {}
    for app, weights in (("a", (5, 25, 60)), ("b", (10, 30, 70))):
        cfg = tmp_path / f"{app}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "stableService": "web-stable",
                    "canaryService": f"{app}-canary",
                    "plugins": {
                        "example.com/configmap": {
                            "configMap": "proxy-weights",
                            "key": f"{app}.json",
                        }
                    },
                }
            )
        )
        steps = tmp_path / f"{app}-steps.yaml"
        w1, w2, w3 = weights
        pauses = [{"pause": {"duration": 2}}] if app == "a" else [{"pause": {}}]
        steps.write_text(
            yaml.safe_dump(
                {
                    "steps": [
                        {"setWeight": w1},
                        {"pause": {"duration": 2}},
                        {"setWeight": w2},
                        *pauses,
                        {"setWeight": w3},
                    ]
                }
            )
        )
        runs[app] = (cfg, steps, weights)

    def weight(app: str) -> int | None:
        _, obj = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
        raw = (obj.get("data") or {}).get(f"{app}.json")
        return json.loads(raw).get(f"{app}-canary", 0) if raw else None

    procs = {
        app: start_run(launched, cp, tmp_path, steps, cfg, ns)
        for app, (cfg, steps, _) in runs.items()
    }
    # Two fresh interpreters import the client and apply their first step: seconds when quiet,
    # more on a busy machine.
    wait_for(
        lambda: weight("a") == 5 and weight("b") == 10,
        timeout=60,
        what=lambda: (
            f"a at {weight('a')} (want 5), b at {weight('b')} (want 10)\n"
            f"a:\n{procs['a'].output(timeout=0)}\nb:\n{procs['b'].output(timeout=0)}"
        ),
    )
    cp.kill_apiserver()
    time.sleep(3)  # both runs keep retrying while the API server is down
    cp.start_apiserver()
    assert procs["a"].wait(90) == 0, procs["a"].output()
    assert weight("a") == 60
    wait_for(lambda: weight("b") == 30, timeout=60)  # b waits for its own promote only
    assert procs["b"].proc.poll() is None, "a's run must not promote b's"
    b_router = Router(
        RoutingConfig.from_document({**yaml.safe_load(runs["b"][0].read_text()), "namespace": ns}),
        kube=Kube(
            Transport(
                kube_config.new_client_from_config(config_file=str(cp.kubeconfig_for("routers")))
            )
        ),
        registry=registry,
    )
    assert send_command(b_router, "promote")
    assert procs["b"].wait(60) == 0, procs["b"].output()
    assert weight("b") == 70
    _, obj = cp.request("GET", f"/api/v1/namespaces/{ns}/configmaps/proxy-weights")
    progress = json.loads(obj["metadata"]["annotations"][PROGRESS])
    assert sorted(progress) == [f"{ns}/a-canary", f"{ns}/b-canary"]
    assert [progress[k]["step"] for k in sorted(progress)] == [4, 4]
    assert obj["data"]["other"] == "keep"
    for app in ("a", "b"):
        out = procs[app].output()
        assert "retrying" in out, f"{app} did not ride out the outage:\n{out}"
