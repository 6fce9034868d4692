"""A kopf operator that walks a ``CanaryRelease`` through canary steps with :class:`Router`.

It is deliberately small, but it does the things every controller built on canary-routers has to
get right (README.md beside this file explains each):

* one idempotent reconcile, run on create, update, resume and every timer tick: it re-asserts the
  state of the current step (zero writes when in place, a repair when someone drifted it) and
  advances at most one step, only once the targets verifiably express the current one;
* progress lives in ``.status`` and is written *before* the next step's traffic, so a restarted
  operator resumes where it was and never skips a step;
* target objects come from a watch-backed kopf index (an informer cache) passed as ``live=``;
* ``spec.abort`` and deletion (a finalizer) send 100% back to stable and remove managed routes;
* kopf runs sync handlers on a thread pool and timers concurrently with change handlers, so each
  release is reconciled under its own lock with a fresh read of the resource.

Run it with ``kopf run examples/kopf-operator/main.py`` or embed it with :func:`run_embedded`.
"""

from __future__ import annotations

import asyncio
import copy
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

from routers.cluster import DEFAULT_TIMEOUTS, ApiStatus, Kube, Router, Timeouts, Transport
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
    watch: tuple[str, ...] = ()
    """kopf resource specs of the target kinds to cache (``httproutes.v1.gateway.networking.k8s.io``,
    ``configmaps``). Targets not cached are read from the API server on every reconcile."""
    plugins: Registry | None = None
    """Plugin registry; None discovers the installed ``routers.plugins`` entry points."""
    clock: Callable[[], float] = time.time
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    """Connect/read limits of every API call, kopf's watches included: never wait forever."""

    @classmethod
    def from_env(cls) -> Options:
        """``kopf run`` takes no operator arguments, so the knobs come from the environment."""
        watch = os.environ.get("CANARY_WATCH", "")
        return cls(
            kubeconfig=os.environ.get("KUBECONFIG") or None,
            context=os.environ.get("CANARY_CONTEXT") or None,
            interval=float(os.environ.get("CANARY_INTERVAL", "5")),
            watch=tuple(w.strip() for w in watch.split(",") if w.strip()),
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
        self._transport: Transport | None = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        with self._guard:
            if self._transport is None:
                self._client = ApiClient(client_configuration(self.options))
                self._transport = Transport(self._client, timeouts=self.options.timeouts)
            return self._transport

    def close(self) -> None:
        with self._guard:
            self._releases.clear()
            if self._client is not None:
                self._client.close()  # type: ignore[no-untyped-call]
            self._client = self._transport = None

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
                program.config, kube=Kube(self.transport), registry=self.options.plugins
            )
            rel.run_id = program.run_id
        return rel.router

    def _path(self, namespace: str, name: str, sub: str = "") -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}{sub}"

    def _get(self, namespace: str, name: str) -> JSON | None:
        try:
            obj: JSON = self.transport.request("GET", self._path(namespace, name))
        except ApiStatus as exc:
            if exc.code == 404:
                return None
            raise
        return obj

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
        return new

    # -- reconcile -------------------------------------------------------------------------

    def reconcile(
        self, namespace: str, name: str, uid: str, live: Mapping[ObjectRef, JSON] | None = None
    ) -> None:
        """Bring one release one step closer to done; safe to call any time, from any thread."""
        rel = self._release(uid)
        with rel.lock:
            for _ in range(5):
                # Fresh read under the lock: kopf's ``status`` kwarg may predate a status write
                # made by a concurrent handler (timers run alongside change handlers).
                obj = self._get(namespace, name)
                meta = (obj or {}).get("metadata") or {}
                if obj is None or meta.get("uid") != uid or meta.get("deletionTimestamp"):
                    return
                try:
                    self._drive(rel, obj, live)
                    return
                except _Conflict:
                    live = None  # our picture is stale; the next round reads everything
                    continue
            raise kopf.TemporaryError("CanaryRelease kept changing under us", delay=1)

    def _drive(self, rel: _Release, obj: JSON, live: Mapping[ObjectRef, JSON] | None) -> None:
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
                self._advance(router, program, obj, base, live)
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
        live: Mapping[ObjectRef, JSON] | None,
    ) -> None:
        old = obj.get("status") or {}
        last = len(program.steps.steps) - 1
        step = int(old.get("currentStep", -1))
        step = min(step, last)
        done = old.get("phase") == "Completed"
        pause_started = _parse_iso(old.get("pauseStartedAt"))
        if pause_started is None and step >= 0 and isinstance(program.steps.steps[step], Pause):
            pause_started = self.options.clock()  # status edited by hand: the clock restarts
        verified = self._assert(router, program.state_at(step), live) if step >= 0 else True
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
                verified = self._assert(router, program.state_at(step), None)
        self._write_status(obj, self._status(program, base, step, verified, pause_started, done))

    def _assert(
        self, router: Router, state: TrafficState, live: Mapping[ObjectRef, JSON] | None
    ) -> bool:
        """Apply ``state`` (zero writes when in place) and tell whether the targets express it."""
        outcome = router.apply_state(state, live=live)
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


def _cache(indexes: Mapping[str, Any]) -> dict[ObjectRef, JSON]:
    """Flatten the kopf indexes (``live_*`` kwargs) into the ``live=`` mapping a Router takes."""
    out: dict[ObjectRef, JSON] = {}
    for key, index in indexes.items():
        if key.startswith("live_"):
            for ref, store in index.items():
                for obj in store:
                    out[ref] = obj
    return out


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

    for i, resource in enumerate(options.watch):

        @kopf.index(resource, id=f"live_{i}", registry=registry)
        def index(body: kopf.Body, **_: Any) -> dict[ObjectRef, JSON]:
            # A detached copy: kopf keeps mutating its own view as events arrive.
            obj = copy.deepcopy(dict(body))
            return {ObjectRef.of(obj): obj}

    def reconcile(namespace: str | None, name: str, uid: str, **kwargs: Any) -> None:
        assert namespace is not None, "CanaryRelease is namespaced"
        controller.reconcile(namespace, name, uid, _cache(kwargs) or None)

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
