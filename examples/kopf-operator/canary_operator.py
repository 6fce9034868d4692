"""A kopf operator that walks a ``CanaryRelease`` through canary steps with :class:`Router`.

It is deliberately small, but it does the things every controller built on canary-routers has to
get right (README.md beside this file explains each):

* one idempotent reconcile, run on create, update, resume and every timer tick: it re-asserts the
  state of the current step (zero writes when in place, a repair when someone drifted it) and
  advances at most one step, only once the targets verifiably express the current one;
* progress lives in ``.status`` and is written *before* the next step's traffic, so a restarted
  operator resumes where it was and never skips a step;
* every Router shares one :class:`WatchCache` (list+watch of the targets, and of the releases):
  a steady tick sends no request at all, and a stale read costs one conflict, never a write;
* ``spec.abort`` and deletion (a finalizer) send 100% back to stable and remove managed routes;
* kopf runs sync handlers on a thread pool and timers concurrently with change handlers, so each
  release is reconciled under its own lock with a fresh read of the resource.

Run it with ``kopf run examples/kopf-operator/main.py`` or embed it with :func:`run_embedded`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from routers.cluster import (
    DEFAULT_TIMEOUTS,
    ApiStatus,
    Kube,
    Router,
    Timeouts,
    Transport,
    WatchCache,
)
from routers.errors import (
    ConfigError,
    LimitExceededError,
    PluginError,
    Problem,
    RoutersError,
    UnsupportedError,
)
from routers.model import RoutingConfig, TrafficState
from routers.model.steps import Pause, StepFile, steps_from_document
from routers.planning import weights
from routers.planning.objects import JSON, ObjectRef
from routers.registry import Registry

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Controller",
    "Options",
    "Program",
    "configure",
    "parse_spec",
    "register",
    "run_embedded",
]

GROUP = "examples.canary-routers.io"
VERSION = "v1alpha1"
PLURAL = "canaryreleases"
KIND = "CanaryRelease"
RESOURCE = f"{PLURAL}.{VERSION}.{GROUP}"

# Errors that only a change of the spec can fix: retrying them would spin.
PERMANENT: tuple[type[RoutersError], ...] = (
    ConfigError,
    UnsupportedError,
    LimitExceededError,
    PluginError,
)

log = logging.getLogger("canary-operator")


@dataclass(frozen=True)
class Options:
    """How the operator connects and how eagerly it reconciles."""

    kubeconfig: str | None = None
    """None: $KUBECONFIG / ~/.kube/config, or the in-cluster service account."""
    context: str | None = None
    interval: float = 5.0
    """Seconds between timer reconciles: pause clocks, verification, drift repair."""
    cache: bool = True
    """Read targets and releases through one shared WatchCache (needs list/watch RBAC on the
    target kinds: ``routers rbac --watch-cache``); False reads them with GETs every tick."""
    plugins: Registry | None = None
    """Plugin registry; None discovers the installed ``routers.plugins`` entry points."""
    clock: Callable[[], float] = time.time
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    """Connect/read limits of every API call, kopf's watches included: never wait forever."""

    @classmethod
    def from_env(cls) -> Options:
        """``kopf run`` takes no operator arguments, so the knobs come from the environment."""
        return cls(
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            context=os.environ.get("CANARY_CONTEXT") or None,
            interval=float(os.environ.get("CANARY_INTERVAL", "5")),
            cache=os.environ.get("CANARY_CACHE", "1").strip().lower() not in ("0", "false", "no"),
        )


# -- the release's program: routing + steps ---------------------------------------------------


@dataclass(frozen=True)
class Program:
    """A parsed ``spec``: what to route and the state after each step."""

    config: RoutingConfig
    steps: StepFile
    initial: TrafficState
    states: tuple[TrafficState, ...]
    run_id: str

    def state_at(self, step: int) -> TrafficState:
        return self.initial if step < 0 else self.states[step]

    def promotions_needed(self, step: int) -> int:
        """How many ``spec.promotions`` release the indefinite pause at ``step`` (1 for the first)."""
        return sum(
            1 for s in self.steps.steps[: step + 1] if isinstance(s, Pause) and s.duration is None
        )


def parse_spec(spec: Mapping[str, Any], namespace: str) -> Program:
    """Validate the spec; errors name ``spec.*`` paths so they read well in ``.status.message``."""
    routing = dict(spec.get("routing") or {})
    problems: list[Problem] = []
    # A namespaced resource must not steer another namespace's traffic: whoever may create a
    # CanaryRelease here would otherwise borrow the operator's rights everywhere.
    if routing.get("namespace") not in (None, namespace):
        problems.append(Problem("spec.routing.namespace", f"must be {namespace!r} (or omitted)"))
    routing["namespace"] = namespace
    config: RoutingConfig | None = None
    try:
        config = RoutingConfig.from_document(routing)
    except ConfigError as exc:
        problems.extend(exc.within("spec.routing").problems)
    steps: StepFile | None = None
    try:
        steps, _ = steps_from_document({"steps": spec.get("steps")})
    except ConfigError as exc:
        problems.extend(exc.within("spec").problems)
    if problems or config is None or steps is None:
        raise ConfigError(problems)
    initial = TrafficState(total=config.max_traffic_weight or 100)
    digest = json.dumps([config.dump(), [s.dump() for s in steps.steps]], sort_keys=True)
    return Program(
        config=config,
        steps=steps,
        initial=initial,
        states=tuple(steps.states(initial)),
        run_id=hashlib.sha256(digest.encode()).hexdigest()[:16],
    )


# -- the controller --------------------------------------------------------------------------


class _Conflict(Exception):
    """Someone else wrote the CanaryRelease between our read and our status write."""


@dataclass
class _Release:
    lock: threading.Lock = field(default_factory=threading.Lock)
    run_id: str | None = None
    router: Router | None = None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _describe(state: TrafficState) -> dict[str, Any]:
    split = weights.split(state)
    return {
        "weights": {"stable": split.stable, "canary": split.canary, "total": split.total},
        "headerRoutes": [r.name for r in state.header_routes],
        "mirrorRoutes": [r.name for r in state.mirror_routes],
    }


def client_configuration(options: Options) -> Configuration:
    """One source of credentials for both kopf's watches and the Router's writes."""
    cfg = Configuration()
    if options.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        kube_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=options.kubeconfig, context=options.context, client_configuration=cfg
        )
    return cfg


def connection_info(cfg: Configuration) -> kopf.ConnectionInfo:
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


class Controller:
    """The reconcile logic, independent of kopf's plumbing (one instance per operator)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._guard = threading.Lock()
        self._releases: dict[str, _Release] = {}
        self._client: ApiClient | None = None
        self._kube: Kube | None = None
        self._cache: WatchCache | None = None
        self._closed = False

    # -- plumbing --------------------------------------------------------------------------

    def _connect(self) -> Kube:
        """One client, one Kube (discovery cached once) and one WatchCache for all releases."""
        with self._guard:
            if self._kube is None:
                self._client = ApiClient(client_configuration(self.options))
                self._kube = Kube(Transport(self._client, timeouts=self.options.timeouts))
                # A handler still running after close() reads from the server: no new watches.
                caching = self.options.cache and not self._closed
                self._cache = WatchCache(self._kube) if caching else None
            return self._kube

    @property
    def transport(self) -> Transport:
        return self._connect().transport

    @property
    def cache(self) -> WatchCache | None:
        self._connect()
        return self._cache

    def close(self) -> None:
        with self._guard:
            self._closed = True
            self._releases.clear()
            if self._cache is not None:
                self._cache.stop()  # ends every watch and joins its thread
            if self._client is not None:
                self._client.close()  # type: ignore[no-untyped-call]
            self._client = self._kube = self._cache = None

    def _release(self, uid: str) -> _Release:
        with self._guard:
            return self._releases.setdefault(uid, _Release())

    def forget(self, uid: str) -> None:
        with self._guard:
            self._releases.pop(uid, None)

    def _router(self, rel: _Release, program: Program) -> Router:
        # One Router per release and program: it caches CRD facts and its lock serialises the
        # release's writes; a new program (spec edited before start) gets a fresh one.
        if rel.router is None or rel.run_id != program.run_id:
            rel.router = Router(
                program.config,
                kube=self._connect(),
                cache=self.cache,
                registry=self.options.plugins,
            )
            rel.run_id = program.run_id
        return rel.router

    def _path(self, namespace: str, name: str, sub: str = "") -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}{sub}"

    def _get(self, namespace: str, name: str, *, fresh: bool = False) -> JSON | None:
        """The release from the watch cache (it holds our own status writes at once), or from
        the server when ``fresh`` (after a conflict: the cache had not seen someone's write)."""
        cache = self.cache
        ref = ObjectRef(GROUP, KIND, namespace, name, VERSION)
        if cache is not None:
            return cache.fresh(ref) if fresh else cache.get(ref)
        return self._connect().get(ref)

    def _write_status(self, obj: JSON, status: Mapping[str, Any]) -> JSON:
        """Merge-patch ``.status``, guarded by the resourceVersion we planned from."""
        meta = obj["metadata"]
        old = obj.get("status") or {}
        if {k: v for k, v in status.items() if v is not None} == old:
            return obj  # a steady tick writes nothing
        body = {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            # keys we no longer set are removed (null), so status never mixes two runs
            "status": {**dict.fromkeys(old), **status},
        }
        try:
            new: JSON = self.transport.request(
                "PATCH",
                self._path(meta["namespace"], meta["name"], "/status"),
                body=body,
                content_type="application/merge-patch+json",
            )
        except ApiStatus as exc:
            if exc.code == 409:
                raise _Conflict(str(exc)) from None
            raise
        cache = self.cache
        if cache is not None:
            cache.record(new)  # the next tick, on any thread, sees this status at once
        return new

    # -- reconcile -------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, uid: str) -> None:
        """Bring one release one step closer to done; safe to call any time, from any thread."""
        rel = self._release(uid)
        with rel.lock:
            for attempt in range(5):
                # Read under the lock: kopf's ``status`` kwarg may predate a status write made by
                # a concurrent handler (timers run alongside change handlers); the cache has it.
                obj = self._get(namespace, name, fresh=attempt > 0)
                meta = (obj or {}).get("metadata") or {}
                if obj is None or meta.get("uid") != uid or meta.get("deletionTimestamp"):
                    return
                try:
                    self._drive(rel, obj)
                    return
                except _Conflict:
                    continue  # our picture was stale: the next round reads from the server
            raise kopf.TemporaryError("CanaryRelease kept changing under us", delay=1)

    def _drive(self, rel: _Release, obj: JSON) -> None:
        spec = obj.get("spec") or {}
        old = obj.get("status") or {}
        namespace = obj["metadata"]["namespace"]
        base: dict[str, Any] = {"observedGeneration": obj["metadata"].get("generation")}
        try:
            program = parse_spec(spec, namespace)
            if old.get("runId") not in (None, program.run_id):
                raise ConfigError(
                    [
                        Problem(
                            "spec",
                            "routing and steps cannot change once a release has started; "
                            "abort or delete it and create a new CanaryRelease",
                        )
                    ]
                )
            router = self._router(rel, program)
            base |= {"runId": program.run_id, "totalSteps": len(program.steps.steps)}
            if spec.get("abort"):
                self._abort(router, program, obj, base)
            else:
                self._advance(router, program, obj, base)
        except PERMANENT as exc:
            # Keep runId/step so an edit back to the original spec resumes this run.
            self._write_status(obj, {**old, **base, "phase": "Failed", "message": str(exc)})
        except RoutersError as exc:
            # Missing target, RBAC, conflicts, API outage: report, and let the timer retry.
            log.warning("%s/%s: %s", namespace, obj["metadata"]["name"], exc)
            self._write_status(obj, {**old, **base, "verified": False, "message": str(exc)})

    def _abort(self, router: Router, program: Program, obj: JSON, base: dict[str, Any]) -> None:
        # Re-asserted on every tick (zero writes once clean), so a managed route re-added by
        # hand during an abort is removed again.
        router.cleanup(restore_stable=True)
        old = obj.get("status") or {}
        self._write_status(
            obj,
            {
                **base,
                "phase": "Aborted",
                "currentStep": old.get("currentStep", -1),
                **_describe(program.initial),
                "verified": router.verify(program.initial).ok,
                "message": "aborted: managed routes removed, 100% of traffic on stable",
            },
        )

    def _advance(
        self,
        router: Router,
        program: Program,
        obj: JSON,
        base: dict[str, Any],
    ) -> None:
        old = obj.get("status") or {}
        last = len(program.steps.steps) - 1
        step = int(old.get("currentStep", -1))
        step = min(step, last)
        done = old.get("phase") == "Completed"
        pause_started = _parse_iso(old.get("pauseStartedAt"))
        if pause_started is None and step >= 0 and isinstance(program.steps.steps[step], Pause):
            pause_started = self.options.clock()  # status edited by hand: the clock restarts
        verified = self._assert(router, program.state_at(step)) if step >= 0 else True
        if not done and verified and self._gate_open(program, obj, step, pause_started):
            if step == last:
                done = True
            else:
                # Record the step we are about to execute *before* touching traffic: a crash
                # after this write re-asserts the new step; one before it redoes the old.
                step += 1
                pause_started = (
                    self.options.clock() if isinstance(program.steps.steps[step], Pause) else None
                )
                obj = self._write_status(
                    obj, self._status(program, base, step, False, pause_started, done)
                )
                verified = self._assert(router, program.state_at(step))
        self._write_status(obj, self._status(program, base, step, verified, pause_started, done))

    def _assert(self, router: Router, state: TrafficState) -> bool:
        """Apply ``state`` (zero writes when in place) and tell whether the targets express it."""
        outcome = router.apply_state(state)
        # Verify against what the server answered to our writes (the cache lags behind the
        # watch for a moment): no extra reads, and still the server's own view.
        return router.verify(state, live=outcome.result).ok

    def _gate_open(
        self, program: Program, obj: JSON, step: int, pause_started: float | None
    ) -> bool:
        if step < 0:
            return True
        current = program.steps.steps[step]
        if not isinstance(current, Pause):
            return True
        if current.duration is None:
            promotions = (obj.get("spec") or {}).get("promotions") or 0
            return int(promotions) >= program.promotions_needed(step)
        assert pause_started is not None, "a pause step always has a start time"
        return self.options.clock() - pause_started >= current.duration

    def _status(
        self,
        program: Program,
        base: dict[str, Any],
        step: int,
        verified: bool,
        pause_started: float | None,
        done: bool,
    ) -> dict[str, Any]:
        current = program.steps.steps[step] if step >= 0 else None
        if done:
            phase, message = "Completed", "all steps complete"
        elif isinstance(current, Pause):
            phase = "Paused"
            message = (
                f"paused until spec.promotions >= {program.promotions_needed(step)}"
                if current.duration is None
                else f"paused for {current.duration:g}s"
            )
        else:
            phase = "Progressing"
            kind = current.kind if current is not None else "start"
            message = f"step {step + 1}: {kind}" + ("" if verified else " (not verified yet)")
        return {
            **base,
            "phase": phase,
            "currentStep": step,
            **_describe(program.state_at(step)),
            "verified": verified,
            "pauseStartedAt": None if pause_started is None or done else _iso(pause_started),
            "message": message,
        }

    def finalize(self, namespace: str, name: str, uid: str, spec: Mapping[str, Any]) -> None:
        """On deletion: managed routes out, 100% to stable (then kopf drops the finalizer)."""
        rel = self._release(uid)
        with rel.lock:
            try:
                program = parse_spec(spec, namespace)
            except ConfigError:
                log.info("%s/%s: invalid spec, nothing was ever routed", namespace, name)
                self.forget(uid)
                return
            try:
                self._router(rel, program).cleanup(restore_stable=True)
            except PERMANENT as exc:
                # A spec we never could apply left nothing behind; do not block deletion.
                log.info("%s/%s: nothing to clean up: %s", namespace, name, exc)
        self.forget(uid)


# -- kopf wiring -----------------------------------------------------------------------------


def configure(settings: kopf.OperatorSettings, options: Options) -> None:
    """kopf settings of this operator (called at startup)."""
    # Our own annotation prefix, and no kopf progress in .status: the status schema is ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # kopf's own defaults leave watches without a client or server timeout; use ours, so a
    # stream from a dead API server is dropped and re-established instead of hanging.
    limits = options.timeouts
    settings.watching.server_timeout = limits.watch_seconds
    settings.watching.client_timeout = limits.watch[1]
    settings.watching.connect_timeout = limits.connect
    settings.networking.connect_timeout = limits.connect
    settings.networking.request_timeout = limits.read


def register(registry: kopf.OperatorRegistry, options: Options) -> Controller:
    """Register the handlers on ``registry``; the returned controller holds the routers."""
    controller = Controller(options)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, options)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(client_configuration(options))

    @kopf.on.cleanup(registry=registry)
    def close(**_: Any) -> None:
        controller.close()

    def reconcile(namespace: str | None, name: str, uid: str, **_: Any) -> None:
        assert namespace is not None, "CanaryRelease is namespaced"
        controller.reconcile(namespace, name, uid)

    kopf.on.create(RESOURCE, registry=registry, id="reconcile-create")(reconcile)
    kopf.on.resume(RESOURCE, registry=registry, id="reconcile-resume")(reconcile)
    kopf.on.update(RESOURCE, field="spec", registry=registry, id="reconcile-update")(reconcile)
    kopf.timer(RESOURCE, interval=options.interval, registry=registry, id="reconcile-timer")(
        reconcile
    )

    @kopf.on.delete(RESOURCE, registry=registry, id="restore-stable")
    def delete(namespace: str | None, name: str, uid: str, spec: kopf.Spec, **_: Any) -> None:
        assert namespace is not None, "CanaryRelease is namespaced"
        controller.finalize(namespace, name, uid, dict(spec))

    return controller


def run_embedded(
    options: Options,
    *,
    namespaces: Iterable[str],
    stop: threading.Event,
    ready: threading.Event | None = None,
) -> None:
    """Run the operator in the calling thread until ``stop`` is set (tests, embedding).

    Standalone (no kopf peering): run one replica per namespace set. The handler thread pool is
    ours, so it is shut down here and no thread outlives the call.
    """
    registry = kopf.OperatorRegistry()
    register(registry, options)
    settings = kopf.OperatorSettings()
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="canary-operator")
    settings.execution.executor = executor
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                namespaces=list(namespaces),
                stop_flag=stop,
                ready_flag=ready,
            )
        )
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
