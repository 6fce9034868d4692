"""Argo Rollouts' own plugin client, driven call by call (argo/cmd/argo-driver), for e2e tests.

The driver reads the ``argo-rollouts-config`` ConfigMap, installs the plugins into
``plugin-bin/`` and makes every call through the controller's plugin Reconciler, exactly as the
rollouts-controller does; this module starts it, sends calls and finds the processes behind it
(the bridge Argo started, the ``routers argo-plugin`` process the bridge started).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from e2e.cluster import BinariesUnavailable, LineReader, _run_script, memoised_build

ROOT = Path(__file__).resolve().parent.parent
BUILD_SH = ROOT / "argo" / "build.sh"


class DriverError(RuntimeError):
    pass


_built: dict[str, Path | BinariesUnavailable] = {}


def build(target: str = "bridge") -> Path:
    """Path of the bridge (or the driver), built by argo/build.sh on a cache miss (memoised per
    process); raises :class:`BinariesUnavailable` when it cannot be built."""
    return memoised_build(
        _built,
        target,
        lambda: Path(_run_script(BUILD_SH, [target], what=f"argo/build.sh {target}")),
    )


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


class Driver:
    """One argo-driver process: ``call(plugin, method, ...)`` returns its JSON answer."""

    def __init__(
        self,
        binary: Path,
        *,
        kubeconfig: Path,
        namespace: str,
        workdir: Path,
        log: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.log = log
        self._log_file: IO[bytes] = open(log, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [
                str(binary),
                f"-kubeconfig={kubeconfig}",
                f"-namespace={namespace}",
                f"-workdir={workdir}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env={**os.environ, **(env or {})},
        )
        self._lines = LineReader(self.proc)
        self._next_id = 0
        self.latencies: dict[str, list[int]] = {}
        """Milliseconds per call, by method, as the driver measured them around Argo's client."""
        first = self._next(ready_timeout)
        if not first.get("ready"):
            raise DriverError(f"driver did not get ready: {first}")
        self.pid = int(first["pid"])

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout)
        except TimeoutError:
            raise DriverError(
                f"no answer from the driver within {timeout}s; log {self.log}"
            ) from None
        if line is None:
            raise DriverError(f"the driver exited ({self.proc.poll()}); log:\n{self.tail()}")
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            return {"error": f"driver wrote {line!r}"}
        return answer

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def call(
        self, plugin: str, method: str, rollout: dict[str, Any] | None = None, **args: Any
    ) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "plugin": plugin, "method": method, **args}
        if rollout is not None:
            message["rollout"] = rollout
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._next(timeout=200)
        if answer.get("id") != self._next_id:
            raise DriverError(f"answer out of order: {answer}")
        self.latencies.setdefault(method, []).append(int(answer.get("millis", 0)))
        return answer

    def ok(
        self, plugin: str, method: str, rollout: dict[str, Any] | None = None, **args: Any
    ) -> dict[str, Any]:
        answer = self.call(plugin, method, rollout, **args)
        if answer.get("error"):
            raise AssertionError(
                f"{method} failed: {answer['error']}\n--- driver log ---\n{self.tail()}"
            )
        return answer

    # -- the processes Argo's client started ------------------------------------------------

    def bridge_pid(self, plugin: str) -> int:
        found = [
            p
            for p in children(self.proc.pid)
            if cmdline(p)[:1] and cmdline(p)[0].endswith(f"plugin-bin/{plugin}")
        ]
        if len(found) != 1:
            raise DriverError(f"expected one bridge process for {plugin}, found {found}")
        return found[0]

    def python_pid(self, plugin: str) -> int:
        bridge = self.bridge_pid(plugin)
        found = [p for p in children(bridge) if "argo-plugin" in cmdline(p)]
        if len(found) != 1:
            raise DriverError(f"expected one Python side under bridge {bridge}, found {found}")
        return found[0]

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log_file.close()
