"""The real Argo Rollouts controller as a local process against the local kube-apiserver.

Built from Go modules (``e2e/argo-controller/build.sh``: ``cmd/rollouts-controller`` at the
version pinned in e2e/argo-controller/go.mod, the same as the bridge's); its CRDs are the
``argo-rollouts`` CRD set (``manifests/crds`` of the same module) and its RBAC is the module's
``manifests/role/argo-rollouts-clusterrole.yaml``, bound to the static-token user ``argo-rollouts``.

Traffic-router plugins come from the ``argo-rollouts-config`` ConfigMap in the controller's
namespace (``trafficRouterPlugins``, ``file://`` locations): the controller copies each into
``<state_dir>/plugin-bin/<org>/<name>`` and starts it through hashicorp/go-plugin on first use,
and again whenever it has exited. The plugin processes are the controller's children and
inherit its environment (``KUBECONFIG`` = the controller's identity, as a service account would
be shared in a cluster).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from e2e._argo import build as build_argo
from e2e.cluster import HERE, ControlPlane, ensure_built, free_port
from e2e.workers import LocalProcess, WorkloadError, wait_for

ARGO_BUILD_SH = HERE / "argo-controller" / "build.sh"

ARGO_USER = "argo-rollouts"
ARGO_GROUP = "routers-e2e:argo-rollouts"
ARGO_NAMESPACE = "argo-rollouts"
CONFIGMAP = "argo-rollouts-config"
INSTANCE_LABEL = "argo-rollouts.argoproj.io/controller-instance-id"
ARGO_USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    ARGO_USER: (f"argo-{secrets.token_hex(8)}", (ARGO_GROUP,)),
}


def ensure_argo_controller() -> Path:
    """The rollouts-controller binary (built on a cache miss)."""
    controller = "rollouts-controller"
    return ensure_built(ARGO_BUILD_SH, (controller,), what="argo-controller build.sh") / controller


def ensure_bridge() -> Path:
    """The canary-routers bridge binary (argo/build.sh, built on a cache miss)."""
    return build_argo("bridge")


def argo_module_dir(crds_root: Path) -> Path:
    """Directory of the argo-rollouts Go module the CRD set was taken from."""
    source = json.loads((crds_root / "argo-rollouts" / "SOURCE.json").read_text())
    return Path(source["dir"])


def install_rbac(cp: ControlPlane, module_dir: Path) -> None:
    """Argo's own ClusterRole (from the module), bound to the argo-rollouts user's group."""
    role = yaml.safe_load(
        (module_dir / "manifests/role/argo-rollouts-clusterrole.yaml").read_text()
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "routers-e2e-argo-rollouts"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": ARGO_GROUP}
        ],
    }
    apply(cp, role, binding)


def apply(cp: ControlPlane, *objs: Mapping[str, Any], user: str = "admin") -> None:
    """``kubectl apply --server-side`` of objects (as ``user``), bounded like every kubectl call."""
    cp.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=routers-e2e",
        "-f",
        "-",
        user=user,
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}),
    )


class ArgoRollouts:
    """rollouts-controller with a trafficRouterPlugins ConfigMap; ``stop()`` ends its plugins too.

    ``instance_id`` makes it act only on Rollouts labelled
    ``argo-rollouts.argoproj.io/controller-instance-id=<instance_id>`` (several controllers can
    share a plane)."""

    def __init__(
        self,
        cp: ControlPlane,
        *,
        binary: Path,
        state_dir: Path,
        instance_id: str,
        plugins: Sequence[Mapping[str, Any]] = (),
        env: Mapping[str, str] | None = None,
        namespace: str = ARGO_NAMESPACE,
    ) -> None:
        self.cp = cp
        self.binary = binary
        self.state_dir = state_dir
        self.instance_id = instance_id
        self.plugins = [dict(p) for p in plugins]
        self.extra_env = dict(env or {})
        self.namespace = namespace
        self.healthz_port = 0
        self.metrics_port = 0
        self.process: LocalProcess | None = None

    @property
    def log(self) -> Path:
        return self.state_dir / "rollouts-controller.log"

    def write_config(self) -> None:
        """The argo-rollouts-config ConfigMap (read by the controller at start)."""
        self.cp.create_namespace(self.namespace)
        apply(
            self.cp,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": CONFIGMAP, "namespace": self.namespace},
                "data": {"trafficRouterPlugins": yaml.safe_dump(self.plugins, sort_keys=False)}
                if self.plugins
                else {},
            },
        )

    def start(self, timeout: float = 120.0) -> ArgoRollouts:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.healthz_port, self.metrics_port = free_port(), free_port()
        kubeconfig = str(self.cp.kubeconfig_for(ARGO_USER))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.state_dir),
            "POD_NAMESPACE": self.namespace,
            "KUBECONFIG": kubeconfig,
            **self.extra_env,
        }
        self.process = LocalProcess(
            "rollouts-controller",
            [
                self.binary,
                f"--kubeconfig={kubeconfig}",
                f"--instance-id={self.instance_id}",
                "--leader-elect=false",
                f"--healthzPort={self.healthz_port}",
                f"--metricsPort={self.metrics_port}",
                "--loglevel=info",
            ],
            self.log,
            env=env,
            cwd=self.state_dir,
            new_session=True,  # stop() also ends the plugin processes it started
        ).start()
        try:
            wait_for("rollouts-controller /healthz", self._healthy, timeout, procs=[self.process])
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.healthz_port}/healthz", timeout=2
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def tail(self, n: int = 80) -> str:
        return self.process.tail(n) if self.process else ""

    def descendants(self) -> list[tuple[int, str]]:
        """(pid, command line) of every live process below the controller (its plugins)."""
        if self.process is None or not self.process.alive:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        out: list[tuple[int, str]] = []
        todo = list(children.get(self.process.pid, []))
        while todo:
            pid = todo.pop()
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            out.append((pid, cmd.strip()))
            todo.extend(children.get(pid, []))
        return out

    def __enter__(self) -> ArgoRollouts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RolloutError(WorkloadError):
    pass


ROLLOUTS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts"


class RolloutWatch:
    """Every version of one Rollout, as a watch on the apiserver delivers it, with the time seen.

    Waiting on it costs no polling, and the timestamps give Argo's step latencies. A watch
    stream is bounded (``timeoutSeconds``, a socket timeout) and resumed from the last
    resourceVersion; ``stop()`` ends the thread."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.name = name
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> RolloutWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):  # closing under the reading thread
                resp.close()
        self._thread.join(timeout=70)

    def _run(self) -> None:
        rv = ""
        while not self._stop.is_set():
            params = {
                "watch": "1",
                "fieldSelector": f"metadata.name={self.name}",
                "timeoutSeconds": "30",
            }
            if rv:
                params["resourceVersion"] = rv
            url = (
                self.cp.server
                + ROLLOUTS.format(ns=self.namespace)
                + "?"
                + urllib.parse.urlencode(params)
            )
            req = urllib.request.Request(url)
            req.add_header("Authorization", f"Bearer {self.cp.admin_token}")
            try:
                with urllib.request.urlopen(req, context=self.cp._ssl, timeout=45) as resp:
                    self._resp = resp
                    for line in resp:
                        if self._stop.is_set():
                            return
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            rv = ""  # expired: start over with a fresh list+watch
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if ev.get("type") in ("ADDED", "MODIFIED"):
                            with self._cond:
                                self.events.append((time.monotonic(), obj))
                                self._cond.notify_all()
            except Exception as e:  # closing the stream under the reader raises anything
                if self._stop.is_set():
                    return
                self.error = e  # a dropped stream: resume from the last resourceVersion
                time.sleep(0.2)
            finally:
                self._resp = None

    @property
    def latest(self) -> dict[str, Any]:
        with self._cond:
            return self.events[-1][1] if self.events else {}

    def wait(
        self,
        what: str,
        predicate: Any,
        timeout: float,
        *,
        procs: Sequence[LocalProcess] = (),
        diagnose: Any = None,
    ) -> tuple[float, dict[str, Any]]:
        """The first (time, Rollout) seen from now on (or already latest) that satisfies
        ``predicate``; fails after ``timeout`` with the Rollout's status and the logs."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = max(len(self.events) - 1, 0)
        while True:
            for p in procs:
                p.check_alive()
            with self._cond:
                for i in range(seen, len(self.events)):
                    t, obj = self.events[i]
                    if predicate(obj):
                        return t, obj
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(timeout=min(left, 1.0))
        status = json.dumps(self.latest.get("status", {}), indent=1, sort_keys=True)
        extra = diagnose() if diagnose else ""
        tails = "\n".join(p.tail(80) for p in procs)
        raise RolloutError(
            f"Rollout {self.namespace}/{self.name}: timed out after {timeout:.0f}s waiting for "
            f"{what}\nstatus: {status}\n{extra}\n{tails}"
        )

    def first_time(self, predicate: Any, since: float = 0.0) -> float | None:
        with self._cond:
            for t, obj in self.events:
                if t >= since and predicate(obj):
                    return t
        return None
