"""What makes pods real enough on the local control plane: controllers, a scheduler, fake nodes.

On top of a ``ControlPlane`` (etcd + kube-apiserver, e2e/cluster.py) this starts, as local
processes built from Go modules:

* ``kube-controller-manager`` and ``kube-scheduler`` from the same ``k8s.io/kubernetes`` module
  as the apiserver (``e2e/controlplane/build.sh kube-controller-manager kube-scheduler``), with
  only the controllers a Deployment-less workload needs: ReplicaSets create pods, the
  EndpointSlice controller fills the Services' slices, the garbage collector and the namespace
  controller clean up;
* ``kwok`` (``e2e/kwok/build.sh``) playing the kubelet of fake Nodes: their pods get an address
  from the Node's ``podCIDR`` and become Ready at once (kwok's default "fast" stages).

Every start, stop and wait is bounded; each process logs to a file in the state dir and the
tails of all logs are attached to any failure. Stdlib + PyYAML only, like cluster.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from e2e.cluster import (
    BUILD_SH,
    HERE,
    ControlPlane,
    ControlPlaneError,
    _pdeathsig,
    _tail,
    end_session,
    ensure_built,
)

KWOK_BUILD_SH = HERE / "kwok" / "build.sh"

# Static-token identities of the components (passed to ControlPlane(users=...)). Names under
# "system:" keep their requests out of the audit helpers' default results, as for the
# apiserver's own loopback client.
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
KWOK_USER = "system:kwok-controller"
WORKER_USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Without per-controller service accounts the controllers need more than the bootstrap
    # system:kube-controller-manager role: run them as masters, as a single binary would.
    CONTROLLER_MANAGER_USER: ("kcm-token", ("system:masters",)),
    # The scheduler's own bootstrap bindings (system:kube-scheduler, system:volume-scheduler).
    SCHEDULER_USER: ("scheduler-token", ()),
    # kwok writes Node and Pod status for many nodes: masters, as in kwokctl's clusters.
    KWOK_USER: ("kwok-token", ("system:masters",)),
}

# Controllers kube-controller-manager runs (names from its --help). The node lifecycle
# controller lifts the not-ready taint the apiserver puts on every new Node once kwok reports it
# Ready (without it nothing is ever scheduled).
CONTROLLERS = (
    "node-lifecycle-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "garbage-collector-controller",
    "namespace-controller",
)

KWOK_ANNOTATION = "kwok.x-k8s.io/node"

T = TypeVar("T")


class WorkloadError(ControlPlaneError):
    pass


def ensure_kube_controllers() -> Path:
    """Bin dir with kube-controller-manager and kube-scheduler (built on a cache miss)."""
    return ensure_built(
        BUILD_SH,
        ("kube-controller-manager", "kube-scheduler"),
        args=("kube-controller-manager", "kube-scheduler"),
        what="controlplane build.sh (controllers)",
    )


def ensure_kwok() -> Path:
    """The kwok binary (built on a cache miss)."""
    return ensure_built(KWOK_BUILD_SH, ("kwok",), what="kwok build.sh") / "kwok"


class LocalProcess:
    """One long-running binary: its own log file, dies with the test process, bounded stop.

    ``new_session`` puts it in its own process group, so ``stop()`` also ends the children it
    started (Argo's plugin processes)."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str | Path],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalProcess:
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {time.strftime('%H:%M:%S')}: {self.cmd}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                preexec_fn=_pdeathsig,  # noqa: PLW1509 (PR_SET_PDEATHSIG needs it)
                start_new_session=self.new_session,
                close_fds=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.new_session:  # it and every child it started (those that outlived it too)
            end_session(proc, grace)
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def tail(self, n: int = 60) -> str:
        return f"----- last {n} lines of {self.name} ({self.log}) -----\n" + _tail(self.log, n)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise WorkloadError(
                f"{self.name} exited with code {self.proc.returncode}\n{self.tail(100)}"
            )


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    *,
    procs: Iterable[LocalProcess] = (),
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy; fail early when a process died.

    The failure names what was awaited and carries the tails of every process's log."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for p in procs:
            p.check_alive()
        try:
            value = check()
        except (OSError, ControlPlaneError) as e:  # an apiserver hiccup: try again
            value, last = None, e
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "\n".join(p.tail() for p in procs)
            raise WorkloadError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last})" if last else "")
                + f"\n{tails}"
            )
        time.sleep(interval)


class Workers:
    """kube-controller-manager + kube-scheduler + kwok with ``nodes`` fake Nodes.

    The plane must have been created with ``users=WORKER_USERS`` (the components' identities).
    Pods get addresses from ``pod_cidr`` (every Node's podCIDR)."""

    def __init__(
        self,
        cp: ControlPlane,
        *,
        kube_bin: Path,
        kwok_bin: Path,
        state_dir: Path,
        pod_cidr: str,
        node_ip: str,
        nodes: int = 1,
    ) -> None:
        self.cp = cp
        self.kube_bin = kube_bin
        self.kwok_bin = kwok_bin
        self.state_dir = state_dir
        self.pod_cidr = pod_cidr
        self.node_ip = node_ip
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.procs: list[LocalProcess] = []

    def _kubeconfig(self, user: str) -> str:
        try:
            return str(self.cp.kubeconfig_for(user))
        except KeyError:
            raise WorkloadError(
                f"the control plane has no user {user!r}: create it with users=WORKER_USERS"
            ) from None

    def start(self, timeout: float = 120.0) -> Workers:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kcm_kc = self._kubeconfig(CONTROLLER_MANAGER_USER)
        sched_kc = self._kubeconfig(SCHEDULER_USER)
        kwok_kc = self._kubeconfig(KWOK_USER)
        (self.state_dir / "kwok.yaml").write_text("")  # not ~/.kwok/kwok.yaml
        specs: list[tuple[str, list[str | Path]]] = [
            (
                "kube-controller-manager",
                [
                    self.kube_bin / "kube-controller-manager",
                    f"--kubeconfig={kcm_kc}",
                    "--secure-port=0",  # no HTTPS endpoint: nothing scrapes it here
                    "--leader-elect=false",
                    "--use-service-account-credentials=false",
                    f"--controllers={','.join(CONTROLLERS)}",
                    "--concurrent-replicaset-syncs=2",
                    "--v=2",
                ],
            ),
            (
                "kube-scheduler",
                [
                    self.kube_bin / "kube-scheduler",
                    f"--kubeconfig={sched_kc}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--v=2",
                ],
            ),
            (
                "kwok",
                [
                    self.kwok_bin,
                    f"--config={self.state_dir / 'kwok.yaml'}",
                    f"--kubeconfig={kwok_kc}",
                    f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                    f"--cidr={self.pod_cidr}",
                    f"--node-ip={self.node_ip}",
                    "--node-port=0",
                    "--server-address=",
                    # Renew a Lease per Node (the node lifecycle controller's heartbeat): without
                    # one, kwok's default stages report status only every ~10 min and the Node
                    # turns NotReady after 50 s, taking every pod out of its Services.
                    "--node-lease-duration-seconds=40",
                ],
            ),
        ]
        try:
            for name, cmd in specs:
                self.procs.append(LocalProcess(name, cmd, self.state_dir / f"{name}.log").start())
            for node in self.node_names:
                self._create_node(node)
            wait_for(
                f"nodes {', '.join(self.node_names)} Ready",
                self._nodes_ready,
                timeout,
                procs=self.procs,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _create_node(self, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]},
        }
        status, data = self.cp.request("POST", "/api/v1/nodes", body)
        if status not in (201, 409):
            raise WorkloadError(f"creating node {name}: {status} {data}")

    def _nodes_ready(self) -> bool:
        for name in self.node_names:
            status, node = self.cp.request("GET", f"/api/v1/nodes/{name}")
            if status != 200:
                return False
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            if conds.get("Ready") != "True":
                return False
        return True

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def tails(self, n: int = 60) -> str:
        return "\n".join(p.tail(n) for p in self.procs)

    def check_alive(self) -> None:
        for p in self.procs:
            p.check_alive()

    def __enter__(self) -> Workers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pods(cp: ControlPlane, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    params = {"labelSelector": selector} if selector else None
    status, data = cp.request("GET", f"/api/v1/namespaces/{namespace}/pods", params=params)
    if status != 200:
        raise WorkloadError(f"listing pods in {namespace}: {status} {data}")
    items: list[dict[str, Any]] = data["items"]
    return items


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def summarize_pods(items: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(
        [
            {
                "name": p["metadata"]["name"],
                "node": p.get("spec", {}).get("nodeName"),
                "ip": p.get("status", {}).get("podIP"),
                "phase": p.get("status", {}).get("phase"),
                "ready": pod_ready(p),
            }
            for p in items
        ]
    )
