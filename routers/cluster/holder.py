"""Our bookkeeping annotations on the *holder*: the first target of a config that exists.

``routers run`` keeps its progress there and the Argo Rollouts plugin its managed routes, so a
restarted process finds them on the very objects it routes through (no extra object, no extra
RBAC). Writes are guarded JSON patches of one annotation, re-read and retried on conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from routers.cluster._transport import ApiStatus
from routers.cluster.router import Router
from routers.errors import ApplyError, ConflictError
from routers.planning.objects import JSON, ObjectRef, get_annotations
from routers.planning.patch import PatchBuilder, pointer

__all__ = ["find_holder", "write_annotation"]


def find_holder(
    router: Router, live: Mapping[ObjectRef, JSON | None] | None = None, *, fresh: bool = False
) -> tuple[ObjectRef, JSON] | None:
    """The first target that exists (objects in ``live`` are not read again; ``fresh`` reads
    from the server even through a watch cache)."""
    snapshot = router.read(live=live, fresh=fresh)
    for ref in router.targets(live=snapshot):
        obj = snapshot.get(ref)
        if obj is not None:
            return ref, obj
    return None


def write_annotation(
    router: Router,
    key: str,
    value: str | Callable[[str | None], str | None] | None,
    *,
    found: tuple[ObjectRef, JSON] | None = None,
    attempts: int = 10,
) -> tuple[ObjectRef, JSON] | None:
    """Set (or remove, for ``None``) one annotation on the holder; return the holder as written.

    ``value`` may be a function of the current value (read-modify-write, applied again to a
    fresh read after a conflict). ``found`` is a holder already read (saves a GET). Returns
    ``None`` when no target exists, and the unchanged holder when nothing changes.
    """
    stale = False
    for _ in range(attempts):
        if found is None:
            found = find_holder(router, fresh=stale)
        if found is None:
            return None
        ref, obj = found
        builder = PatchBuilder(obj)
        path = pointer("metadata", "annotations", key)
        new = value(get_annotations(obj).get(key)) if callable(value) else value
        if new is None:
            builder.remove(path)
        else:
            builder.set(path, new)
        if not builder.changed:
            return found
        try:
            written = router.kube.json_patch(ref, builder.ops())
        except ApiStatus as exc:
            if exc.code in (409, 422):
                # What we read was stale (a watch cache may lag): read from the server.
                found, stale = None, True
                continue
            raise ApplyError(
                str(ref), code=exc.code, reason=exc.reason, message=exc.message, operation="patch"
            ) from None
        if router.cache is not None:
            router.cache.record(written)  # the next read sees it, not the watch's lag
        return ref, written
    raise ConflictError(f"annotation {key}", attempts, "the holder object keeps changing")
