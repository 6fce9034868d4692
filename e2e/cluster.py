"""A real local Kubernetes control plane (etcd + kube-apiserver processes) for e2e tests.

No Docker, no mocks: upstream kube-apiserver / etcd / kubectl built from Go modules by
``e2e/controlplane/build.sh`` and the official CRDs fetched by ``e2e/controlplane/crds.sh``.
Stdlib + PyYAML only; does not import the project's ``routers`` package.

    with ControlPlane(crd_sets=("istio",)) as cp:
        cp.kubeconfig, cp.server, cp.admin_token, cp.token_for("routers-limited")
        mark = cp.audit_mark()
        ...                                   # do things
        assert cp.write_requests(since=mark) == []

CLI:
    python -m e2e.cluster up --crds istio,gateway-standard-v1.6 [--state-dir D]
    python -m e2e.cluster down [--state-dir D]
    python -m e2e.cluster status [--state-dir D]

Limits of a controller-less control plane: namespaces never finish deleting, no garbage
collection, no EndpointSlices for selector Services, no ServiceAccount tokens, pods never run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, AnyStr, Generic

import yaml

HERE = Path(__file__).resolve().parent
CONTROLPLANE_DIR = HERE / "controlplane"
BUILD_SH = CONTROLPLANE_DIR / "build.sh"
CRDS_SH = CONTROLPLANE_DIR / "crds.sh"

# Query parameter of the GET /version requests used to flush the audit log (ignored in events).
SENTINEL_PARAM = "routers-e2e-audit-sentinel"

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

ADMIN_USER = "admin"
ROUTERS_USER = "routers"
LIMITED_USER = "routers-limited"
FOREIGN_USER = "foreign-writer"

# user -> (token or None for random, groups). Non-admin tokens are fixed for convenience.
DEFAULT_USERS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    ADMIN_USER: (None, ("system:masters",)),
    # cluster-admin through RBAC (not system:masters): the identity the code under test can
    # use, so its requests are told apart from the test's own setup (done as admin).
    ROUTERS_USER: ("routers-token", ("routers-e2e:routers",)),
    # No RBAC binding at all: every request to a protected resource is 403.
    LIMITED_USER: ("limited-token", ("routers-e2e:limited",)),
    # Bound to cluster-admin by a ClusterRoleBinding created at start: "someone else" (another
    # controller / a human with kubectl) writing to the same objects.
    FOREIGN_USER: ("foreign-writer-token", ("routers-e2e:foreign",)),
}
# Groups bound to a ClusterRole at start (group -> clusterrole).
GROUP_BINDINGS = {"routers-e2e:routers": "cluster-admin", "routers-e2e:foreign": "cluster-admin"}

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request, written when the response is complete.
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class ControlPlaneError(RuntimeError):
    pass


class BinariesUnavailable(ControlPlaneError):
    """build.sh failed or is not runnable (no Go, no network on a cold machine, ...)."""


def cache_root() -> Path:
    base = os.environ.get("ROUTERS_E2E_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "canary-routers"
    )
    return Path(base)


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ControlPlaneError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ControlPlaneError(f"{name}={raw!r} must be > 0")
    return value


# How long a build script (control plane, kwok, Argo, Traefik) may take as a whole: the CI's own
# limit. A cold build takes 4-7 min on a quiet 2-core machine and over 30 min at load average 21;
# this is the backstop, each go command inside the scripts has its own limit
# (ROUTERS_E2E_BUILD_TIMEOUT, scripts/_limits.sh).
SCRIPT_TIMEOUT_ENV = "ROUTERS_E2E_SCRIPT_TIMEOUT"
SCRIPT_TIMEOUT = 5400.0


class CommandTimeout(ControlPlaneError):
    """A subprocess did not finish within its limit (it and its children were killed)."""


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``, from /proc.

    ``setpgid`` moves a process to another group but never out of its session, so this finds
    what a process-group kill misses: e.g. a build script's ``limit``, whose timeout(1) leads a
    process group of its own."""
    out: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # state ppid pgrp session ...
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(entry))
    return out


def end_session(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """End ``proc`` (started with ``start_new_session=True``) and everything in its session:
    SIGTERM to every process, SIGKILL to whatever is left after ``grace`` seconds. Bounded."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        proc.poll()  # reap the leader, so a dead one does not count
        pids = session_pids(proc.pid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not session_pids(proc.pid):
                break
            time.sleep(0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run_bounded(
    cmd: list[str],
    *,
    timeout: float,
    what: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with a hard limit that also ends the command's children.

    The command leads its own session. On timeout, and on anything that interrupts the wait
    (pytest-timeout, Ctrl-C), the whole session gets SIGTERM and then SIGKILL
    (:func:`end_session`: a build script's ``go build`` and nested limits included), so nothing
    outlives the call holding a build lock; the timeout error says what ran out after how long."""
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as e:
        raise ControlPlaneError(f"cannot run {what}: {e}") from e
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        end_session(proc)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # something left the session and holds the pipes
            proc.kill()
            err = "<no output: the pipes stayed open after the kill>"
        tail = "\n".join((err or "").splitlines()[-20:])
        raise CommandTimeout(
            f"{what} did not finish within {timeout:.0f}s and was stopped: {' '.join(cmd)}\n{tail}"
        ) from None
    except BaseException:
        end_session(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class LineReader(Generic[AnyStr]):
    """The lines a child writes to its stdout, read by a daemon thread into a queue.

    A read of a pipe blocks until a line comes, however long that is; here only this thread
    blocks (it ends at EOF, when the child exits or closes its stdout) and every consumer waits
    with a deadline: :meth:`get`."""

    def __init__(self, proc: subprocess.Popen[AnyStr]) -> None:
        self.proc: subprocess.Popen[AnyStr] = proc
        self._lines: queue.Queue[AnyStr | None] = queue.Queue()
        self._eof = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:  # ends at EOF
                self._lines.put(line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        self._lines.put(None)

    def get(self, timeout: float) -> AnyStr | None:
        """The next line, or None at EOF; :class:`TimeoutError` when none came in time."""
        if self._eof:
            return None
        try:
            line = self._lines.get(timeout=max(timeout, 0))
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout:g}s") from None
        self._eof = line is None
        return line

    def pending(self) -> list[AnyStr]:
        """Every line read so far and not yet taken (after EOF: all of them, once the thread is
        done, which ``join`` waits for, bounded)."""
        out: list[AnyStr] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return out
            if line is None:
                self._eof = True
            else:
                out.append(line)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _run_script(script: Path, args: Iterable[str] = (), what: str = "") -> str:
    """Run a build/fetch script; return the last stdout line (a directory)."""
    if not script.is_file():
        raise BinariesUnavailable(f"{script} not found")
    what = what or script.name
    try:
        limit = _env_seconds(SCRIPT_TIMEOUT_ENV, SCRIPT_TIMEOUT)
        proc = run_bounded(["bash", str(script), *args], timeout=limit, what=what)
    except CommandTimeout as e:
        raise BinariesUnavailable(f"{e}\n(raise {SCRIPT_TIMEOUT_ENV} to allow more)") from None
    except ControlPlaneError as e:
        raise BinariesUnavailable(str(e)) from e
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise BinariesUnavailable(f"{what} failed (exit {proc.returncode}):\n{tail}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise BinariesUnavailable(f"{script.name} printed no directory")
    return lines[-1].strip()


_BUILT: dict[str, Path | BinariesUnavailable] = {}


def memoised_build(
    cache: dict[str, Path | BinariesUnavailable], key: str, build: Callable[[], Path]
) -> Path:
    """``build()`` once per key and process, its failure included (re-raised on every call).

    ``e2e/conftest.py`` builds before the first test, so no test's own timeout pays for a cold
    build, and a failed build is not retried by every test that needs it."""
    if key not in cache:
        try:
            cache[key] = build()
        except BinariesUnavailable as exc:
            cache[key] = exc
    result = cache[key]
    if isinstance(result, BinariesUnavailable):
        raise result
    return result


def ensure_built(
    script: Path,
    binaries: Iterable[str],
    *,
    args: Iterable[str] = (),
    what: str = "",
    bin_dir: str = "",
) -> Path:
    """The bin dir a build script prints (building on a cache miss), checked to hold every one
    of ``binaries``; ``bin_dir`` (an override from the environment) is checked instead of
    building. Once per process (:func:`memoised_build`)."""
    binaries, args = tuple(binaries), tuple(args)

    def build() -> Path:
        d = Path(bin_dir) if bin_dir else Path(_run_script(script, args, what=what))
        missing = [b for b in binaries if not os.access(d / b, os.X_OK)]
        if missing:
            raise BinariesUnavailable(f"{d} lacks {', '.join(missing)}")
        return d

    return memoised_build(_BUILT, f"{script} {' '.join(args)}|{bin_dir}|{binaries}", build)


def ensure_binaries() -> Path:
    """Return the bin dir with kube-apiserver, kubectl, etcd (building them on a cache miss).

    ROUTERS_E2E_BIN_DIR (or ROUTERS_E2E_BIN, what scripts/test exports) overrides (must contain
    the three binaries)."""
    return ensure_built(
        BUILD_SH,
        ("kube-apiserver", "kubectl", "etcd"),
        what="controlplane build.sh",
        bin_dir=os.environ.get("ROUTERS_E2E_BIN_DIR") or os.environ.get("ROUTERS_E2E_BIN") or "",
    )


def ensure_crds(sets: Iterable[str]) -> Path:
    """Fetch the CRD sets (cached) and return the crds root (``<root>/<set>/*.yaml``)."""
    sets = list(sets)
    override = os.environ.get("ROUTERS_E2E_CRDS_DIR")
    if override:
        root = Path(override)
    else:
        root = (
            Path(_run_script(CRDS_SH, sets, what="controlplane crds.sh"))
            if sets
            else cache_root() / "crds"
        )
    owner: dict[str, str] = {}
    for s in sets:
        if not (root / s / "SOURCE.json").is_file():
            raise ControlPlaneError(f"CRD set {s!r} not found under {root}")
        for crd in json.loads((root / s / "SOURCE.json").read_text())["crds"]:
            if crd in owner:
                raise ValueError(
                    f"CRD sets {owner[crd]!r} and {s!r} both define {crd}; "
                    "use separate control planes"
                )
            owner[crd] = s
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the parent
    except Exception:
        pass


def _tail(path: Path, n: int = 100) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=n))
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def _gen_sa_key(path: Path) -> None:
    # SEC1 "EC PRIVATE KEY" PEM: the apiserver reads the public key out of it for
    # --service-account-key-file (a PKCS#8 "PRIVATE KEY" is not accepted there).
    proc = run_bounded(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path)],
        timeout=60,
        what="openssl ecparam (service-account key)",
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl ecparam failed: {proc.stderr.strip()}")
    os.chmod(path, 0o600)


class ControlPlane:
    """etcd + kube-apiserver as local processes on free 127.0.0.1 ports.

    Args:
        crd_sets: CRD set names from e2e/controlplane/crds.py (e.g. "istio",
            "gateway-standard-v1.6"); installed with ``kubectl apply --server-side`` and waited
            for (Established + served in discovery).
        bin_dir: directory with kube-apiserver/kubectl/etcd (default: ``ensure_binaries()``).
        state_dir: where data, certs, logs and the kubeconfig go (default: a new temp dir,
            removed by ``stop()``; a given state_dir is kept unless it was created empty here).
        audit: start the apiserver with a Metadata-level audit policy for every request.
        users: extra static-token users ``{name: (token, groups)}``.
        apiserver_args: extra kube-apiserver flags.
        ready_timeout: seconds to wait for /readyz.
    """

    def __init__(
        self,
        crd_sets: Iterable[str] = (),
        *,
        bin_dir: str | Path | None = None,
        state_dir: str | Path | None = None,
        audit: bool = True,
        users: dict[str, tuple[str, Iterable[str]]] | None = None,
        apiserver_args: Iterable[str] = (),
        ready_timeout: float = 120.0,
        keep_state: bool = False,
    ) -> None:
        self.crd_sets: tuple[str, ...] = tuple(crd_sets)
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self._state_dir_arg = Path(state_dir) if state_dir else None
        self.audit = audit
        self.ready_timeout = ready_timeout
        self.keep_state = keep_state
        self.apiserver_args = list(apiserver_args)
        self._users: dict[str, tuple[str, tuple[str, ...]]] = {}
        for name, (token, groups) in {**DEFAULT_USERS, **(users or {})}.items():
            self._users[name] = (token or secrets.token_hex(24), tuple(groups))
        self.state_dir: Path | None = None
        self._owns_state_dir = False
        self.etcd_proc: subprocess.Popen[bytes] | None = None
        self.apiserver_proc: subprocess.Popen[bytes] | None = None
        self._apiserver_cmd: list[str] = []
        self.etcd_port = self.etcd_peer_port = self.api_port = 0
        self._ssl = ssl.create_default_context()
        self._ssl.check_hostname = False
        self._ssl.verify_mode = ssl.CERT_NONE
        self.installed_crds: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_binaries()
        return self._bin_dir

    @property
    def kubectl_bin(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        assert self.state_dir is not None, "not started"
        return self.state_dir / "kubeconfig"

    @property
    def admin_token(self) -> str:
        return self._users[ADMIN_USER][0]

    @property
    def users(self) -> list[str]:
        return list(self._users)

    def token_for(self, user: str) -> str:
        return self._users[user][0]

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig whose current-context is ``user`` (all contexts are in every file)."""
        if user not in self._users:
            raise KeyError(user)
        assert self.state_dir is not None, "not started"
        return self.state_dir / f"kubeconfig.{user}"

    def context_for(self, user: str) -> str:
        """kubeconfig context name for a user (the context is named after the user)."""
        if user not in self._users:
            raise KeyError(user)
        return user

    @property
    def audit_log(self) -> Path:
        assert self.state_dir is not None, "not started"
        return self.state_dir / "audit.log"

    @property
    def etcd_log(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "kube-apiserver.log"

    @property
    def running(self) -> bool:
        return bool(
            self.apiserver_proc
            and self.apiserver_proc.poll() is None
            and self.etcd_proc
            and self.etcd_proc.poll() is None
        )

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        if self.running:
            return self
        bin_dir = self.bin_dir  # may build (raises BinariesUnavailable)
        crds_root = ensure_crds(self.crd_sets) if self.crd_sets else None
        if self._state_dir_arg:
            self._state_dir_arg.mkdir(parents=True, exist_ok=True)
            self.state_dir = self._state_dir_arg
            self._owns_state_dir = False
        else:
            self.state_dir = Path(tempfile.mkdtemp(prefix="routers-e2e-cp-"))
            self._owns_state_dir = True
        last_err: Exception | None = None
        for _attempt in range(3):  # free ports can be stolen between probe and bind
            try:
                self._start_processes(bin_dir)
                break
            except _PortRace as e:
                last_err = e
                self._stop_processes()
        else:
            self._fail(f"could not start after 3 attempts: {last_err}")
        try:
            self._bootstrap_rbac()
            if crds_root is not None:
                for s in self.crd_sets:
                    self.install_crd_set(crds_root / s)
        except Exception as e:
            self._fail(f"post-start setup failed: {e}")
        return self

    def _start_processes(self, bin_dir: Path) -> None:
        sd = self.state_dir
        assert sd is not None
        for sub in ("etcd-data", "certs"):
            shutil.rmtree(sd / sub, ignore_errors=True)
        (sd / "etcd-data").mkdir(mode=0o700)
        (sd / "certs").mkdir(mode=0o700)
        self.etcd_port, self.etcd_peer_port, self.api_port = free_port(), free_port(), free_port()
        while len({self.etcd_port, self.etcd_peer_port, self.api_port}) < 3:
            self.api_port = free_port()

        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        etcd_cmd = [
            str(bin_dir / "etcd"),
            "--name=default",
            f"--data-dir={sd / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
        self.etcd_proc = self._spawn(etcd_cmd, self.etcd_log)
        self._wait_etcd(etcd_url)

        sa_key = sd / "sa.key"
        if not sa_key.exists():
            _gen_sa_key(sa_key)
        tokens = sd / "tokens.csv"
        with open(tokens, "w") as f:
            for i, (name, (token, groups)) in enumerate(self._users.items()):
                f.write(f'{token},{name},uid-{i}-{name},"{",".join(groups)}"\n')
        os.chmod(tokens, 0o600)
        args = [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={sd / 'certs'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        if self.audit:
            policy = sd / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
            args += [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ]
        args += self.apiserver_args
        self._apiserver_cmd = args
        self.apiserver_proc = self._spawn(args, self.apiserver_log)
        self._wait_apiserver()
        self._write_kubeconfig()

    def kill_apiserver(self) -> None:
        """Kill kube-apiserver (SIGKILL, as a crash would); etcd and its data stay."""
        proc = self.apiserver_proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port, certs and etcd (after kill_apiserver)."""
        self.apiserver_proc = self._spawn(self._apiserver_cmd, self.apiserver_log)
        self._wait_apiserver()
        # /readyz passes before the RBAC authorizer has caught up: wait until a non-master user
        # is authorized again, as clients of a real, warmed-up apiserver would expect.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, _ = self.request("GET", "/api/v1/namespaces/default", user=ROUTERS_USER)
            if status == 200:
                return
            time.sleep(0.2)
        self._fail("RBAC did not authorize the routers user within 60s of a restart")

    def compact_etcd(self) -> int:
        """Advance etcd's revision (a key outside /registry) and compact everything before it, as
        etcd's periodic compaction would: a watch resumed from an older resourceVersion then gets
        410 Gone. Talks to etcd's JSON gateway; returns the compaction revision."""

        def etcd(path: str, body: dict[str, Any]) -> dict[str, Any]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.etcd_port}{path}",
                data=json.dumps(body).encode(),
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                data: dict[str, Any] = json.loads(r.read())
                return data

        key = base64.b64encode(b"/routers-e2e/compaction-bump").decode()
        put = etcd("/v3/kv/put", {"key": key, "value": base64.b64encode(b"x").decode()})
        revision = int(put["header"]["revision"])
        etcd("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def _spawn(self, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:  # fresh log per attempt
            return subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_pdeathsig,  # noqa: PLW1509 (PR_SET_PDEATHSIG needs it)
                close_fds=True,
            )

    def _check_alive(self, proc: subprocess.Popen[bytes] | None, name: str, log: Path) -> None:
        if proc is not None and proc.poll() is not None:
            text = _tail(log, 200)
            if "address already in use" in text:
                raise _PortRace(f"{name}: address already in use")
            self._fail(f"{name} exited with code {proc.returncode}")

    def _wait_etcd(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(self.etcd_proc, "etcd", self.etcd_log)
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        self._fail(f"etcd not healthy after {timeout:.0f}s")

    def _wait_apiserver(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive(self.etcd_proc, "etcd", self.etcd_log)
            self._check_alive(self.apiserver_proc, "kube-apiserver", self.apiserver_log)
            try:
                status, body = self._raw("GET", "/readyz", token=self.admin_token, timeout=3)
                if status == 200:
                    return
                last = f"{status} {body[:300]!r}"
            except OSError as e:
                last = str(e)
            time.sleep(0.3)
        self._fail(f"kube-apiserver /readyz not ok after {self.ready_timeout:.0f}s (last: {last})")

    def _write_kubeconfig(self) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {"server": self.server, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": n, "user": {"token": t}} for n, (t, _) in self._users.items()],
            "contexts": [
                {"name": n, "context": {"cluster": "e2e", "user": n, "namespace": "default"}}
                for n in self._users
            ],
            "current-context": ADMIN_USER,
            "preferences": {},
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg, sort_keys=False))
        os.chmod(self.kubeconfig, 0o600)
        for user in self._users:  # same file, but current-context = that user
            path = self.kubeconfig_for(user)
            path.write_text(yaml.safe_dump({**cfg, "current-context": user}, sort_keys=False))
            os.chmod(path, 0o600)

    def _bootstrap_rbac(self) -> None:
        for group, role in GROUP_BINDINGS.items():
            name = "routers-e2e-" + group.split(":")[-1]
            body = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                ],
            }
            status, data = self.request(
                "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", body
            )
            if status not in (201, 409):
                raise ControlPlaneError(f"creating {name}: {status} {data}")

    def _fail(self, msg: str) -> None:
        report = [f"control plane start failed: {msg}"]
        if self.state_dir is not None:
            for name, log in (("etcd", self.etcd_log), ("kube-apiserver", self.apiserver_log)):
                report.append(f"----- last 100 lines of {name} log ({log}) -----")
                report.append(_tail(log, 100))
        text = "\n".join(report)
        print(text, file=sys.stderr, flush=True)
        self.stop()
        raise ControlPlaneError(text)

    def _stop_processes(self) -> None:
        for attr, grace in (("apiserver_proc", 20.0), ("etcd_proc", 10.0)):
            proc: subprocess.Popen[bytes] | None = getattr(self, attr)
            if proc is None:
                continue
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
            setattr(self, attr, None)

    def stop(self) -> None:
        """SIGTERM kube-apiserver, then etcd (SIGKILL after a grace period); remove temp dirs."""
        self._stop_processes()
        if self.state_dir is not None and self._owns_state_dir and not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None

    def pids(self) -> dict[str, int]:
        return {
            n: p.pid
            for n, p in (("kube-apiserver", self.apiserver_proc), ("etcd", self.etcd_proc))
            if p is not None
        }

    # ------------------------------------------------------------------ API access
    def _raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        token: str | None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(self.server + path, data=body, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        req.add_header("Accept", accept)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = ADMIN_USER,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """Raw API call as ``user``. Returns (status, decoded JSON or text).

        ``body`` may be a dict/list (JSON-encoded), str or bytes. For patches pass
        content_type="application/merge-patch+json" / "application/apply-patch+yaml" etc.
        """
        if params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        status, raw = self._raw(
            method,
            path,
            data,
            token=self.token_for(user),
            content_type=content_type,
            timeout=timeout,
        )
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def version(self) -> dict[str, Any]:
        status, data = self.request("GET", "/version")
        if status != 200 or not isinstance(data, dict):
            raise ControlPlaneError(f"/version: {status} {data}")
        return data

    def kubectl(
        self,
        *args: str,
        user: str = ADMIN_USER,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane as ``user`` (text mode)."""
        cmd = [
            str(self.kubectl_bin),
            f"--kubeconfig={self.kubeconfig}",
            f"--context={self.context_for(user)}",
            *args,
        ]
        if isinstance(input, bytes):
            input = input.decode()
        proc = run_bounded(cmd, input=input, timeout=timeout, what=f"kubectl {args[0]}")
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def create_namespace(self, name: str) -> None:
        status, data = self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if status not in (201, 409):
            raise ControlPlaneError(f"create namespace {name}: {status} {data}")

    def new_namespace(self, prefix: str = "t") -> str:
        """Create a uniquely named namespace (namespaces are never reclaimed: no controllers)."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.create_namespace(name)
        return name

    # ------------------------------------------------------------------ CRDs
    def install_crd_set(self, set_dir: Path, timeout: float = 90.0) -> list[str]:
        """``kubectl apply --server-side`` a CRD set dir, wait until Established and served."""
        set_dir = Path(set_dir)
        meta = json.loads((set_dir / "SOURCE.json").read_text())
        files = sorted(str(p) for p in set_dir.iterdir() if p.suffix in (".yaml", ".yml"))
        args = ["apply", "--server-side", "--field-manager=routers-e2e-crds"]
        for f in files:
            args += ["-f", f]
        self.kubectl(*args, timeout=timeout)
        names = list(meta["crds"])
        self.wait_for_crds(names, timeout=timeout)
        self.installed_crds[set_dir.name] = names
        return names

    def wait_for_crds(self, names: Iterable[str], timeout: float = 90.0) -> None:
        pending = set(names)
        deadline = time.monotonic() + timeout
        problems: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                status, crd = self.request(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                )
                if status != 200:
                    problems[name] = f"GET {status}"
                    continue
                # a freshly created CRD may show `conditions: null` for a moment
                conds = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
                est, nac = conds.get("Established", {}), conds.get("NamesAccepted", {})
                if est.get("status") != "True":
                    problems[name] = (
                        f"Established={est.get('status')} {est.get('message', '')}"
                        f" NamesAccepted={nac.get('status')} "
                        f"{nac.get('message', '')}"
                    )
                    continue
                if self._served(crd):
                    pending.discard(name)
                    problems.pop(name, None)
                else:
                    problems[name] = "not yet in discovery"
            if pending:
                time.sleep(0.3)
        if pending:
            raise ControlPlaneError(
                f"CRDs not ready after {timeout:.0f}s: "
                + "; ".join(f"{n}: {problems.get(n, '?')}" for n in sorted(pending))
            )

    def _served(self, crd: dict[str, Any]) -> bool:
        spec = crd["spec"]
        plural = spec["names"]["plural"]
        for v in spec["versions"]:
            if not v.get("served"):
                continue
            status, data = self.request("GET", f"/apis/{spec['group']}/{v['name']}")
            if status != 200 or not any(
                r.get("name") == plural for r in (data or {}).get("resources", [])
            ):
                return False
        return True

    # ------------------------------------------------------------------ audit
    def audit_mark(self) -> int:
        """Current end of the audit log (pass as ``since`` to count what happens after it)."""
        self._settle_audit()
        try:
            return self.audit_log.stat().st_size
        except FileNotFoundError:
            return 0

    def _settle_audit(self, timeout: float = 10.0) -> None:
        """Make sure every request that completed before this call is in the audit log.

        The log backend (blocking mode) writes a request's ResponseComplete event right after
        the response reached the client, so a reader could miss the last request. Send a
        sentinel request and wait until its own event is in the file."""
        if not self.audit:
            raise ControlPlaneError("audit log disabled for this control plane")
        token = secrets.token_hex(8)
        self._raw("GET", f"/version?{SENTINEL_PARAM}={token}", token=self.admin_token)
        needle = token.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.audit_log, "rb") as f:
                    f.seek(max(0, self.audit_log.stat().st_size - 256 * 1024))
                    if needle in f.read():
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise ControlPlaneError(f"audit sentinel not seen in {self.audit_log} after {timeout}s")

    def audit_events(
        self,
        since: int = 0,
        *,
        user: str | None = None,
        verbs: Iterable[str] | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        api_group: str | None = None,
        include_system: bool = False,
    ) -> list[dict[str, Any]]:
        """Parsed audit events (ResponseComplete stage) after byte offset ``since``.

        Filters: ``user`` (username), ``verbs``, ``resource`` (plural, optionally
        "plural/subresource"), ``namespace``, ``name``, ``api_group`` ("" = core).
        Events of ``system:*`` users (the apiserver's own loopback client) are dropped unless
        ``include_system``.
        """
        self._settle_audit()
        verbs = set(verbs) if verbs is not None else None
        out: list[dict[str, Any]] = []
        try:
            with open(self.audit_log, "rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return out
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a partially written trailing line
            if ev.get("stage") not in (None, "ResponseComplete", "Panic"):
                continue
            if SENTINEL_PARAM in ev.get("requestURI", ""):
                continue
            uname = ev.get("user", {}).get("username", "")
            if not include_system and uname.startswith("system:"):
                continue
            if user is not None and uname != user:
                continue
            if verbs is not None and ev.get("verb") not in verbs:
                continue
            ref = ev.get("objectRef") or {}
            res = ref.get("resource", "")
            if resource is not None:
                if "/" in resource:  # "plural/subresource": exactly that subresource
                    if f"{res}/{ref.get('subresource', '')}" != resource:
                        continue
                elif res != resource:  # plural: the resource and any of its subresources
                    continue
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            if name is not None and ref.get("name") != name:
                continue
            if api_group is not None and ref.get("apiGroup", "") != api_group:
                continue
            out.append(ev)
        return out

    def write_requests(self, since: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """Audit events with a write verb (create/update/patch/delete/deletecollection)."""
        return self.audit_events(since, verbs=WRITE_VERBS, **filters)

    @staticmethod
    def summarize(events: Iterable[dict[str, Any]]) -> list[str]:
        """Compact one-line form of audit events, handy in assertion messages."""
        out = []
        for ev in events:
            ref = ev.get("objectRef") or {}
            out.append(
                "{} {} {}/{}{} {} -> {}".format(
                    ev.get("user", {}).get("username"),
                    ev.get("verb"),
                    ref.get("namespace", "-"),
                    ref.get("resource", ""),
                    "/" + ref["subresource"] if ref.get("subresource") else "",
                    ref.get("name", ""),
                    (ev.get("responseStatus") or {}).get("code"),
                )
            )
        return out


class _PortRace(ControlPlaneError):
    pass


# ====================================================================== CLI
def _default_state_dir() -> Path:
    return cache_root() / "cluster"


def _read_info(state_dir: Path) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads((state_dir / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
    return info


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; /proc tells.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _serve(args: argparse.Namespace) -> int:
    """Foreground server used by ``up``: start, write cluster.json, wait for SIGTERM."""
    state_dir = Path(args.state_dir)
    crds = tuple(s for s in args.crds.split(",") if s)
    stop = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cp = ControlPlane(crds, state_dir=state_dir / "run")
    try:
        cp.start()
    except Exception as e:
        (state_dir / "error.txt").write_text(str(e))
        return 1
    info = {
        "pid": os.getpid(),
        "kubeconfig": str(cp.kubeconfig),
        "server": cp.server,
        "admin_token": cp.admin_token,
        "crd_sets": list(crds),
        "pids": cp.pids(),
        "audit_log": str(cp.audit_log),
        "bin_dir": str(cp.bin_dir),
        "users": {u: cp.token_for(u) for u in cp.users},
    }
    tmp = state_dir / "cluster.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, state_dir / "cluster.json")
    try:
        while not stop["flag"] and cp.running:
            time.sleep(0.5)
    finally:
        cp.stop()
        shutil.rmtree(state_dir / "run", ignore_errors=True)
        for f in ("cluster.json", "pid"):
            with contextlib.suppress(FileNotFoundError):
                (state_dir / f).unlink()
    return 0


def _up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    info = _read_info(state_dir)
    if info and _pid_alive(info["pid"]):
        print(f"already running (pid {info['pid']}); use 'down' first", file=sys.stderr)
        print(info["kubeconfig"])
        return 0
    # Fail fast (in the foreground, with the build output) if binaries/CRDs are unavailable.
    try:
        ensure_binaries()
        ensure_crds([s for s in args.crds.split(",") if s])
    except ControlPlaneError as e:
        print(str(e), file=sys.stderr)
        return 1
    for f in ("cluster.json", "error.txt"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / f).unlink()
    shutil.rmtree(state_dir / "run", ignore_errors=True)
    with open(state_dir / "serve.log", "ab") as log:  # Popen keeps its own copy of the fd
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "e2e.cluster",
                "_serve",
                "--state-dir",
                str(state_dir),
                "--crds",
                args.crds,
            ],
            cwd=str(HERE.parent),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    (state_dir / "pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        info = _read_info(state_dir)
        if info and info.get("pid") == proc.pid:
            print(
                f"control plane up: {info['server']} (pid {proc.pid}, crds: "
                f"{','.join(info['crd_sets']) or '-'})",
                file=sys.stderr,
            )
            print(info["kubeconfig"])
            return 0
        if proc.poll() is not None:
            err = state_dir / "error.txt"
            print(
                err.read_text() if err.exists() else _tail(state_dir / "serve.log"), file=sys.stderr
            )
            return 1
        time.sleep(0.3)
    print(f"timed out after {args.timeout}s; stopping", file=sys.stderr)
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    return 1


def _down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    pid_file = state_dir / "pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        print("not running (no pid file)", file=sys.stderr)
        return 0
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for f in ("pid", "cluster.json"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / f).unlink()
    shutil.rmtree(state_dir / "run", ignore_errors=True)
    print(f"control plane (pid {pid}) stopped", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    info = _read_info(Path(args.state_dir))
    if info and _pid_alive(info["pid"]):
        print(json.dumps(info, indent=2))
        return 0
    print("not running", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status", "_serve"):
        sp = sub.add_parser(name)
        sp.add_argument("--state-dir", default=str(_default_state_dir()))
        if name in ("up", "_serve"):
            sp.add_argument("--crds", default="", help="comma-separated CRD set names")
        if name == "up":
            sp.add_argument(
                "--timeout",
                type=float,
                default=900.0,
                help="seconds to wait for the plane (includes a cold build)",
            )
    args = p.parse_args(argv)
    return {"up": _up, "down": _down, "status": _status, "_serve": _serve}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
