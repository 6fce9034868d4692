"""Applying plans: guarded writes, conflict-safe retries, and rollback of partial applies.

One attempt = read -> plan -> execute every operation of every plugin in order. When an
operation fails, the operations already applied in this attempt are reverted with guarded
inverse operations (a patch back to what we read, tested against the resourceVersion our own
write produced; a delete of what we created, by uid; a re-create of what we deleted). A
conflict (409, a failed ``test`` guard, an object gone in between) then triggers a fresh read and
re-plan with jittered backoff; anything else raises with exactly what was applied and reverted.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routers.cluster._kube import Kube
from routers.cluster._transport import ApiStatus
from routers.cluster._watch import WatchCache
from routers.contract import ClusterFacts
from routers.engine import Binding, bind, crd_facts, gather, plan_all
from routers.errors import ApplyError, ConflictError, ForbiddenError, RoutersError
from routers.model import Desired, RoutingConfig
from routers.planning.objects import JSON, LiveObjects, ObjectRef, SelectorRef
from routers.planning.patch import inverse_ops, share_unchanged, wire_ops
from routers.planning.plan import Create, Delete, Operation, Patch, Plan
from routers.registry import Registry

__all__ = ["Applied", "Outcome", "execute", "gather_facts", "lister", "reader", "reconcile"]

_SERVER_FIELDS = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)


@dataclass(frozen=True)
class Applied:
    op: Operation
    before: JSON | None
    after: JSON | None

    def describe(self) -> str:
        return f"{self.op.verb} {self.op.ref}"


@dataclass(frozen=True)
class Outcome:
    plans: tuple[Plan, ...]
    applied: tuple[Applied, ...]
    attempts: int
    dry_run: bool
    live: LiveObjects

    @property
    def writes(self) -> int:
        return len(self.applied)

    @property
    def result(self) -> dict[ObjectRef, JSON | None]:
        """Every target after this outcome (missing ones as ``None``): the snapshot updated by
        our write responses. Hand it back as ``live=`` and the next step reads nothing."""
        objects = self.live.known()
        for done in self.applied:
            objects[done.op.ref] = done.after
        return objects

    @property
    def changed(self) -> bool:
        return bool(self.applied)


class _Retry(Exception):
    def __init__(
        self,
        op: Operation,
        cause: ApiStatus,
        applied: Sequence[str] = (),
        reverted: Sequence[str] = (),
        failed: Sequence[str] = (),
    ) -> None:
        self.op = op
        self.cause = cause
        self.applied = tuple(applied)
        self.reverted = tuple(reverted)
        self.failed = tuple(failed)
        super().__init__(str(cause))


def _api_error(
    exc: ApiStatus, op_verb: str, ref: ObjectRef, resource: str, **kw: Any
) -> ApplyError:
    if exc.code == 403:
        return ForbiddenError(str(ref), verb=op_verb, resource=resource, message=exc.message, **kw)
    return ApplyError(
        str(ref), code=exc.code, reason=exc.reason, message=exc.message, operation=op_verb, **kw
    )


def is_conflict(exc: ApiStatus, verb: str) -> bool:
    """Worth a re-read and re-plan: someone else changed the object between our read and write."""
    if exc.code == 409:
        return True
    # A JSON patch whose `test` guard fails -- or whose paths no longer exist -- comes back as a
    # bare 422 with no field causes; schema rejections always name their causes.
    if exc.code == 422 and verb == "patch" and not (exc.details or {}).get("causes"):
        return True
    return exc.code == 404 and verb in ("patch", "delete")


def reader(
    kube: Kube, cache: WatchCache | None = None, *, fresh: bool = False
) -> Callable[[ObjectRef], JSON | None]:
    """Reads for ``gather``: from ``cache`` when there is one (``fresh``: from the server, and
    the cache keeps the answer), else a GET; API errors become :class:`ApplyError`."""
    get = kube.get if cache is None else (cache.fresh if fresh else cache.get)

    def read(ref: ObjectRef) -> JSON | None:
        try:
            return get(ref)
        except ApiStatus as exc:
            resource = _resource_name(kube, ref)
            raise _api_error(exc, "get", ref, resource) from None

    return read


def lister(
    kube: Kube, cache: WatchCache | None = None, *, fresh: bool = False
) -> Callable[[SelectorRef], list[JSON]]:
    """Selector lists for ``gather``: from ``cache`` when there is one (it holds every object of
    the kind in the namespace; ``fresh``: one LIST, and the cache keeps the answer), else one
    LIST; API errors become :class:`ApplyError`."""

    def list_objects(selector: SelectorRef) -> list[JSON]:
        try:
            if cache is None:
                return kube.list_selected(selector)
            return cache.select_fresh(selector) if fresh else cache.select(selector)
        except ApiStatus as exc:
            ref = ObjectRef(selector.group, selector.kind, selector.namespace, "", selector.version)
            raise _api_error(exc, "list", ref, _resource_name(kube, ref)) from None

    return list_objects


def _resource_name(kube: Kube, ref: ObjectRef) -> str:
    try:
        return kube.resource(ref).resource
    except (ApiStatus, RoutersError):
        return f"{ref.kind}.{ref.group}" if ref.group else ref.kind


def gather_facts(kube: Kube, bindings: Sequence[Binding]) -> ClusterFacts:
    """Served versions (one discovery request) and the facts of every CRD a plugin asked for.

    A CRD we may not read (RBAC) is simply unknown; plugins then fall back to their config.
    """
    try:
        served = kube.served_groups()
    except ApiStatus as exc:
        raise ApplyError(
            "API discovery", code=exc.code, reason=exc.reason, message=exc.message, operation="get"
        ) from None
    crds = {}
    for name in sorted({n for b in bindings for n in b.plugin.crds}):
        try:
            obj = kube.crd(name)
        except ApiStatus as exc:
            if exc.code == 403:
                continue
            raise ApplyError(
                f"CustomResourceDefinition {name}",
                code=exc.code,
                reason=exc.reason,
                message=exc.message,
                operation="get",
            ) from None
        if obj is not None:
            crds[name] = crd_facts(obj)[1]
    return ClusterFacts(served=served, crds=crds, source="cluster")


def _strip(obj: Mapping[str, Any]) -> JSON:
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in _SERVER_FIELDS:
            meta.pop(key, None)
    out.pop("status", None)
    return out


def _do(
    kube: Kube, op: Operation, live: LiveObjects, dry_run: bool, relaxed: bool = False
) -> Applied:
    before = live.get(op.ref)
    if isinstance(op, Create):
        return Applied(op, None, kube.create(op.ref, op.body, dry_run=dry_run))
    if isinstance(op, Patch):
        # Relaxed: under a writer that changes the object faster than we can read-plan-write
        # (Argo CD self-heal, a mutating webhook), the resourceVersion test never passes; the
        # identity and value guards of each edit still keep it in its place.
        ops = wire_ops(op.ops, relaxed=relaxed)
        after = share_unchanged(before, kube.json_patch(op.ref, ops, dry_run=dry_run))
        return Applied(op, before, after)
    kube.delete(op.ref, uid=op.uid, resource_version=op.resource_version, dry_run=dry_run)
    return Applied(op, before, None)


def _revert_one(kube: Kube, done: Applied) -> None:
    op = done.op
    if isinstance(op, Create):
        meta = (done.after or {}).get("metadata") or {}
        kube.delete(op.ref, uid=meta.get("uid"), resource_version=None)
    elif isinstance(op, Patch):
        assert done.before is not None
        assert done.after is not None
        inverse = inverse_ops(_strip(done.after), _strip(done.before))
        if inverse:
            kube.json_patch(op.ref, inverse)
    elif done.before is not None:
        kube.create(op.ref, _strip(done.before))


def _revert(kube: Kube, journal: Sequence[Applied]) -> tuple[list[str], list[str]]:
    reverted: list[str] = []
    failed: list[str] = []
    for done in reversed(journal):
        try:
            _revert_one(kube, done)
        except ApiStatus as exc:
            failed.append(f"{done.describe()} ({exc.code} {exc.reason}: {exc.message})")
        else:
            reverted.append(done.describe())
    return reverted, failed


def execute(
    kube: Kube,
    plans: Sequence[Plan],
    live: LiveObjects,
    *,
    dry_run: bool = False,
    revert_on_conflict: bool = True,
    relax_resource_version: bool = False,
) -> list[Applied]:
    """Run every operation in order; on failure revert this attempt's writes, then raise.

    With ``revert_on_conflict=False`` a conflict leaves this attempt's writes in place: the
    caller re-plans from fresh reads, and a declarative plan simply continues where they stop.
    """
    journal: list[Applied] = []
    for plan in plans:
        for op in plan:
            try:
                journal.append(_do(kube, op, live, dry_run, relax_resource_version))
            except ApiStatus as exc:
                conflict = is_conflict(exc, op.verb)
                if conflict and not revert_on_conflict:
                    raise _Retry(op, exc, [d.describe() for d in journal]) from None
                reverted, failed = ([], []) if dry_run else _revert(kube, journal)
                if conflict:
                    raise _Retry(
                        op, exc, [d.describe() for d in journal], reverted, failed
                    ) from None
                raise _api_error(
                    exc,
                    op.verb,
                    op.ref,
                    _resource_name(kube, op.ref),
                    applied=[d.describe() for d in journal],
                    reverted=reverted,
                    revert_failed=failed,
                ) from None
    return journal


def _remember(cache: WatchCache, journal: Sequence[Applied]) -> None:
    for done in journal:
        if done.after is not None:
            cache.record(done.after)
        elif isinstance(done.op, Delete):
            cache.record_deleted(done.op.ref, done.op.resource_version)


def reconcile(
    kube: Kube,
    config: RoutingConfig,
    desired: Desired,
    *,
    registry: Registry | None = None,
    bindings: Sequence[Binding] | None = None,
    live: Mapping[ObjectRef, JSON | None] | None = None,
    facts: ClusterFacts | None = None,
    dry_run: bool = False,
    max_attempts: int = 10,
    relax_after: int | None = 4,
    backoff: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
    cache: WatchCache | None = None,
    read: Callable[[ObjectRef], JSON | None] | None = None,
) -> Outcome:
    """Make the cluster express ``desired``. Writes nothing when it already does.

    Each attempt reads, plans and writes with every guard. After ``relax_after`` conflicting
    attempts the resourceVersion guard is dropped (identity and value guards stay), so a hot
    foreign writer of unrelated fields cannot starve us; ``relax_after=None`` never relaxes.

    With a ``cache``, the first attempt reads from it (no request when it holds the targets);
    a conflict means it was stale, so later attempts read from the server. Every write response
    goes into the cache, so the next step and ``verify`` see it without waiting for the watch.
    ``read`` replaces the first attempt's reader (the Router's, which reuses parsed objects).
    """
    bindings = list(bindings) if bindings is not None else bind(config, registry)
    facts = facts or gather_facts(kube, bindings)
    known = live
    last: _Retry | None = None
    for attempt in range(1, max_attempts + 1):
        first = read if read is not None and last is None else None
        snapshot = gather(
            bindings,
            first or reader(kube, cache, fresh=last is not None),
            known,
            list_objects=lister(kube, cache, fresh=last is not None),
        )
        plans = plan_all(bindings, snapshot, desired, facts, routing=config)
        if all(p.empty for p in plans):
            return Outcome(tuple(plans), (), attempt, dry_run, snapshot)
        try:
            journal = execute(
                kube,
                plans,
                snapshot,
                dry_run=dry_run,
                revert_on_conflict=attempt == max_attempts,
                relax_resource_version=relax_after is not None and attempt > relax_after,
            )
        except _Retry as retry:
            last = retry
            known = None  # the cache was stale: read from the server
            sleep(min(backoff * 2 ** (attempt - 1), 2.0) * jitter())
            continue
        if cache is not None and not dry_run:
            _remember(cache, journal)
        return Outcome(tuple(plans), tuple(journal), attempt, dry_run, snapshot)
    assert last is not None
    raise ConflictError(
        str(last.op.ref),
        max_attempts,
        f"{last.cause.code} {last.cause.reason}: {last.cause.message}",
    )
