"""The limits of the e2e harness and the build scripts, on real processes (seconds, no cluster).

A build that outlives its limit must be stopped with everything it started (an orphaned
``go build`` kept the Traefik build lock and a core after pytest-timeout killed its test), and
the error must say what ran out and which knob raises the limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.cluster import (
    BinariesUnavailable,
    CommandTimeout,
    LineReader,
    _run_script,
    memoised_build,
    run_bounded,
)

ROOT = Path(__file__).resolve().parents[2]
LIMITS = ROOT / "scripts" / "_limits.sh"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_a_command_past_its_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; sleep 60"
    start = time.monotonic()
    with pytest.raises(
        CommandTimeout, match=r"fake build did not finish within 1s and was stopped"
    ):
        run_bounded(["bash", "-c", script], timeout=1, what="fake build")
    assert time.monotonic() - start < 30
    child = int(pids.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the background child outlived the limit"


def _wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _nested(tmp_path: Path) -> tuple[str, Path]:
    """A build script whose slow step runs under ``limit`` (timeout(1) leads a process group of
    its own, out of reach of a kill of the script's group) and leaves a child there."""
    pidfile = tmp_path / "inner.pid"
    script = (
        f"set -euo pipefail; source {LIMITS}; "
        f"limit 600 'go build (fake)' bash -c 'sleep 600 & echo $! > {pidfile}; wait'"
    )
    return script, pidfile


def _started(pidfile: Path) -> int:
    deadline = time.monotonic() + 30
    while not pidfile.is_file() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the nested command never started"
        time.sleep(0.05)
    return int(pidfile.read_text())


def test_a_nested_limit_dies_with_the_bounded_run(tmp_path: Path) -> None:
    """run_bounded ends the whole session on timeout: a nested limit's own process group
    included (a process-group kill used to leave its 'go build' running)."""
    script, pidfile = _nested(tmp_path)
    with pytest.raises(CommandTimeout, match="nested build did not finish within 2s"):
        run_bounded(["bash", "-c", script], timeout=2, what="nested build")
    inner = _started(pidfile)
    assert _wait_gone(inner), "the nested limit's child outlived the bounded run"


def test_an_interrupted_bounded_run_ends_its_session(tmp_path: Path) -> None:
    """pytest-timeout's signal method (or Ctrl-C) interrupts the wait inside run_bounded: the
    build it ran is ended too, it does not live on holding the build lock."""
    import signal

    script, pidfile = _nested(tmp_path)

    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(Interrupted):
            run_bounded(["bash", "-c", script], timeout=600, what="interrupted build")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert _wait_gone(_started(pidfile)), "the interrupted build's child lived on"


def test_limit_passes_a_term_on_to_its_command_group(tmp_path: Path) -> None:
    """TERM to the shell running ``limit`` (only to it, not its group) reaches the command's
    process group, and the shell then ends with TERM itself (it does not go on to the next
    step as if the command had failed)."""
    script, pidfile = _nested(tmp_path)
    marker = tmp_path / "went-on"
    with subprocess.Popen(["bash", "-c", f"{script}; touch {marker}"]) as shell:
        inner = _started(pidfile)
        shell.terminate()
        assert shell.wait(30) == -15
    assert _wait_gone(inner), "limit did not pass the TERM on"
    assert not marker.exists()


def test_a_build_script_past_its_limit_names_the_knob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "build.sh"
    script.write_text("echo building >&2\nsleep 60\n")
    monkeypatch.setenv("ROUTERS_E2E_SCRIPT_TIMEOUT", "1")
    with pytest.raises(BinariesUnavailable) as info:
        _run_script(script, what="slow build.sh")
    assert "slow build.sh did not finish within 1s" in str(info.value)
    assert "ROUTERS_E2E_SCRIPT_TIMEOUT" in str(info.value)
    monkeypatch.setenv("ROUTERS_E2E_SCRIPT_TIMEOUT", "soon")
    with pytest.raises(BinariesUnavailable, match="is not a number of seconds"):
        _run_script(script, what="slow build.sh")


def test_a_failed_build_is_remembered_not_retried_by_every_test() -> None:
    calls: list[int] = []

    def build() -> Path:
        calls.append(1)
        raise BinariesUnavailable("no go")

    cache: dict[str, Path | BinariesUnavailable] = {}
    for _ in range(3):
        with pytest.raises(BinariesUnavailable, match="no go"):
            memoised_build(cache, "", build)
    assert calls == [1]
    assert memoised_build({}, "k", lambda: Path("/bin")) == Path("/bin")


def _bash(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source {LIMITS}; {script}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def test_limit_stops_a_command_and_says_what_ran_out() -> None:
    proc = _bash('limit 1 "go build traefik" sleep 30')
    assert proc.returncode == 124
    assert "error: go build traefik did not finish within 1s and was stopped" in proc.stderr
    assert _bash('limit 5 "quick" true').returncode == 0
    assert _bash('limit 5 "failing" false').returncode == 1  # its own exit code, no message
    # A command that itself exits 124 (e.g. an inner limit ran out) is not this limit running out.
    inner = _bash('limit 30 "outer" bash -c "exit 124"')
    assert inner.returncode == 124
    assert "outer did not finish" not in inner.stderr


def test_lock_wait_is_bounded(tmp_path: Path) -> None:
    lock = tmp_path / ".build.lock"
    with subprocess.Popen(["flock", str(lock), "sleep", "30"]) as holder:
        try:
            deadline = time.monotonic() + 10
            while (
                subprocess.run(
                    ["flock", "-n", str(lock), "true"], timeout=10, check=False
                ).returncode
                == 0
            ):
                assert time.monotonic() < deadline, "the holder never took the lock"
                time.sleep(0.05)
            proc = _bash(f"exec 9>{lock}; lock_fd 9 {lock}", ROUTERS_E2E_LOCK_TIMEOUT="1")
        finally:
            holder.kill()
            holder.wait(10)
    assert proc.returncode == 1
    assert "waited 1s (ROUTERS_E2E_LOCK_TIMEOUT)" in proc.stderr


def test_line_reader_never_blocks_its_caller() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = LineReader(proc)
        assert lines.get(30) == "ready\n"
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="no line within 0.2s"):
            lines.get(0.2)  # the child is silent: the wait ends, the child goes on
        assert time.monotonic() - start < 5
        proc.kill()
        assert lines.get(30) is None  # EOF once it is gone
        assert lines.get(0) is None
    finally:
        proc.kill()
        proc.wait(10)
        lines.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
