"""``routers run``: execute canary steps, resumable across crashes and API server restarts.

Progress lives on the first target object (annotation ``canary-routers.io/run-progress``), so
a restarted run continues after the last completed step: the state of that step is re-asserted
(zero writes when it is still in place), a pause resumes where its clock stood, and no step is
repeated or skipped. ``routers promote`` / ``routers abort`` talk to a running run through a
second annotation (``canary-routers.io/run-command``). Abort, Ctrl-C included, removes the managed
routes and sends 100% back to stable.

Both annotations hold one entry per owner (``RoutingConfig.owner_key``), so runs of several apps
sharing the first target never read or clear each other's progress or commands. A progress
value an older version wrote (one run, no owner) is resumed by the run it names and kept
otherwise; an ownerless command applies to whichever run reads it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from routers.cluster._transport import ApiStatus
from routers.cluster.holder import find_holder, write_annotation
from routers.cluster.router import Router
from routers.errors import ApplyError, RoutersError
from routers.model import TrafficState
from routers.model.steps import Pause, StepFile
from routers.planning.objects import get_annotations
from routers.planning.ownership import DOMAIN

__all__ = ["COMMAND", "PROGRESS", "Event", "RunAborted", "Runner", "run_id", "send_command"]

PROGRESS = f"{DOMAIN}/run-progress"
COMMAND = f"{DOMAIN}/run-command"

Command = Literal["promote", "abort"]


class RunAborted(RoutersError):
    """The run was aborted (``routers abort`` or Ctrl-C); traffic is back on stable."""


@dataclass(frozen=True)
class Event:
    kind: Literal["start", "resume", "step", "pause", "waiting", "done", "abort", "retry"]
    step: int
    total: int
    message: str
    state: TrafficState | None = None
    remaining: float | None = None


def run_id(router: Router, steps: StepFile) -> str:
    """Identity of a run: same config and steps, same run (so a restart resumes it)."""
    data = json.dumps([router.config.dump(), [s.dump() for s in steps.steps]], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _entries(raw: str | None) -> dict[str, Any]:
    """An annotation's per-owner entries; a value an older version wrote becomes ``{"": v}``."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"": raw}
    if not isinstance(data, dict) or "run" in data:
        return {"": data}
    return data


def _own_entry(raw: str | None, owner: str) -> Any:
    entries = _entries(raw)
    return entries.get(owner, entries.get(""))


def _with_entry(
    raw: str | None, owner: str, value: Any, *, adopt: Callable[[Any], bool]
) -> str | None:
    """``raw`` with this owner's entry set (``None``: removed); an ownerless entry ``adopt``
    accepts is this owner's (replaced), any other stays."""
    entries = _entries(raw)
    if "" in entries and adopt(entries[""]):
        del entries[""]
    if value is None:
        entries.pop(owner, None)
    else:
        entries[owner] = value
    return json.dumps(entries, sort_keys=True, separators=(",", ":")) if entries else None


def _write_annotation(
    router: Router,
    key: str,
    value: Any,
    adopt: Callable[[Any], bool] = lambda _: False,
) -> None:
    """Set/remove this owner's entry of one annotation on the holder with a guarded patch,
    re-reading on conflict."""
    owner = router.config.owner_key()
    write_annotation(router, key, lambda raw: _with_entry(raw, owner, value, adopt=adopt))


def send_command(router: Router, command: Command) -> bool:
    """Ask a running ``routers run`` to promote or abort; False when no target exists."""
    if find_holder(router) is None:
        return False
    _write_annotation(router, COMMAND, command, adopt=lambda _: True)
    return True


class Runner:
    def __init__(
        self,
        router: Router,
        steps: StepFile,
        *,
        on_event: Callable[[Event], None] = lambda e: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 1.0,
        api_timeout: float = 300.0,
    ) -> None:
        self.router = router
        self.steps = steps
        self.on_event = on_event
        self.clock = clock
        self.sleep = sleep
        self.poll = poll
        self.api_timeout = api_timeout
        self.id = run_id(router, steps)
        initial = TrafficState(total=router.config.max_traffic_weight or 100)
        self.states = steps.states(initial)
        self.initial = initial

    # -- progress ------------------------------------------------------------------------------

    def _annotations(self) -> dict[str, Any]:
        found = self._retrying(lambda: find_holder(self.router))
        if found is None:
            return {}
        ann = get_annotations(found[1])
        owner = self.router.config.owner_key()
        progress = _own_entry(ann.get(PROGRESS), owner)
        command = _own_entry(ann.get(COMMAND), owner)
        return {
            "progress": progress if isinstance(progress, dict) else {},
            "command": command if isinstance(command, str) else None,
        }

    def _mine(self, entry: Any) -> bool:
        return isinstance(entry, dict) and entry.get("run") == self.id

    def _save(self, **progress: Any) -> None:
        value = {"run": self.id, **progress}
        self._retrying(lambda: _write_annotation(self.router, PROGRESS, value, adopt=self._mine))

    def _clear(self) -> None:
        self._retrying(lambda: _write_annotation(self.router, PROGRESS, None, self._mine))
        self._clear_command()

    def _clear_command(self) -> None:
        self._retrying(lambda: _write_annotation(self.router, COMMAND, None, adopt=lambda _: True))

    def _retrying(self, fn: Callable[[], Any]) -> Any:
        """Ride out an API server restart: retry unreachable/5xx errors up to ``api_timeout``.

        A restarted apiserver answers before its RBAC cache has synced, so right after an outage
        a 403 is treated as part of the outage too; a 403 without a preceding outage is real.
        """
        deadline = self.clock() + self.api_timeout
        delay = 0.5
        recovering = False
        while True:
            try:
                return fn()
            except (ApplyError, ApiStatus) as exc:
                code = exc.code
                outage = code in (0, None) or (isinstance(code, int) and code >= 500)
                recovering = recovering or outage
                if not (outage or (recovering and code == 403)) or self.clock() > deadline:
                    raise
                self.on_event(
                    Event(
                        "retry",
                        -1,
                        len(self.steps.steps),
                        f"API server unavailable, retrying: {exc}",
                    )
                )
                self.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _command(self) -> str | None:
        cmd = self._annotations().get("command")
        return str(cmd) if cmd else None

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Run to the end; return the number of steps completed. Raises RunAborted on abort."""
        total = len(self.steps.steps)
        try:
            ann = self._annotations()
            progress = ann.get("progress") or {}
            if ann.get("command") == "abort":
                self._clear_command()
            start = 0
            pause_started: float | None = None
            if progress.get("run") == self.id:
                start = int(progress.get("step", -1)) + 1
                pause_started = progress.get("pauseStarted")
                if start >= total:
                    self.on_event(Event("done", total, total, "already complete"))
                    return total
                current = self.states[start - 1] if start > 0 else self.initial
                self.on_event(
                    Event("resume", start, total, f"resuming at step {start + 1}/{total}", current)
                )
                if start > 0:
                    self._retrying(lambda: self.router.apply_state(current))
            else:
                self.on_event(Event("start", 0, total, f"run {self.id}: {total} steps"))
            for i in range(start, total):
                self._check_abort()
                step = self.steps.steps[i]
                if isinstance(step, Pause):
                    self._pause(i, step, pause_started)
                    pause_started = None
                else:
                    state = self.states[i]

                    def apply(s: TrafficState = state) -> Any:
                        return self.router.apply_state(s)

                    outcome = self._retrying(apply)
                    self.on_event(
                        Event(
                            "step",
                            i,
                            total,
                            f"step {i + 1}/{total}: {step.kind} ({outcome.writes} write(s))",
                            state,
                        )
                    )
                    self._check_abort()
                self._save(step=i)
            self.on_event(Event("done", total, total, "all steps complete"))
            return total
        except KeyboardInterrupt:
            self.abort("interrupted")
            raise
        except RunAborted:
            raise

    def _check_abort(self) -> None:
        if self._command() == "abort":
            self.abort("routers abort")
            raise RunAborted("run aborted: managed routes removed, 100% of traffic on stable")

    def _pause(self, i: int, step: Pause, started: float | None) -> None:
        total = len(self.steps.steps)
        started = started if started is not None else self.clock()
        self._save(step=i - 1, pauseStarted=started)
        while True:
            command = self._command()
            if command == "abort":
                self._check_abort()
            if command == "promote":
                self._clear_command()
                self.on_event(
                    Event("step", i, total, f"step {i + 1}/{total}: pause ended by promote")
                )
                return
            if step.duration is not None:
                remaining = started + step.duration - self.clock()
                if remaining <= 0:
                    self.on_event(
                        Event("step", i, total, f"step {i + 1}/{total}: paused {step.duration:g}s")
                    )
                    return
                self.on_event(
                    Event("pause", i, total, f"step {i + 1}/{total}: pausing", remaining=remaining)
                )
                self.sleep(min(self.poll, remaining))
            else:
                self.on_event(
                    Event(
                        "waiting", i, total, f"step {i + 1}/{total}: paused until `routers promote`"
                    )
                )
                self.sleep(self.poll)

    def abort(self, why: str) -> None:
        total = len(self.steps.steps)
        self._retrying(lambda: self.router.cleanup(restore_stable=True))
        self._clear()
        self.on_event(
            Event("abort", -1, total, f"aborted ({why}): managed routes removed, 100% on stable")
        )
