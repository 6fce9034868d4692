"""Apply plans to in-memory objects, with the API server's semantics where they matter.

Used by the offline CLI (``routers plan -o yaml``) and as a test oracle: whatever a plugin
plans must apply cleanly here, guards included.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import jsonpatch

from routers.errors import ConflictError, PlanError
from routers.planning.objects import JSON, ObjectRef, resource_version, uid
from routers.planning.patch import apply_ops
from routers.planning.plan import Create, Delete, Patch, Plan

__all__ = ["apply_plans"]


def apply_plans(
    plans: Iterable[Plan], objects: Mapping[ObjectRef, JSON]
) -> dict[ObjectRef, JSON | None]:
    """Return the objects after every plan; deleted objects map to ``None``.

    Patched objects get a new resourceVersion (when they had a numeric one) and a new
    generation when their spec changed, as the API server would do.
    """
    state: dict[ObjectRef, JSON | None] = {r: copy.deepcopy(o) for r, o in objects.items()}
    for plan in plans:
        for op in plan:
            current = state.get(op.ref)
            if isinstance(op, Create):
                if current is not None:
                    raise PlanError(f"{op.ref} already exists", plugin=plan.plugin)
                state[op.ref] = copy.deepcopy(op.body)
            elif isinstance(op, Patch):
                if current is None:
                    raise PlanError(f"cannot patch {op.ref}: it does not exist", plugin=plan.plugin)
                try:
                    patched = apply_ops(current, op.ops)
                except jsonpatch.JsonPatchTestFailed as exc:
                    raise ConflictError(str(op.ref), 1, f"guard failed: {exc}") from exc
                except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException) as exc:
                    raise PlanError(
                        f"patch does not apply to {op.ref}: {exc}", plugin=plan.plugin
                    ) from exc
                _bump(current, patched)
                state[op.ref] = patched
            elif isinstance(op, Delete):
                if current is None:
                    continue
                if op.uid and uid(current) and op.uid != uid(current):
                    raise ConflictError(str(op.ref), 1, "uid precondition failed")
                if op.resource_version and resource_version(current) not in (
                    None,
                    op.resource_version,
                ):
                    raise ConflictError(str(op.ref), 1, "resourceVersion precondition failed")
                state[op.ref] = None
    return state


def _bump(before: JSON, after: JSON) -> None:
    meta = after.get("metadata")
    if not isinstance(meta, dict):
        return
    rv = meta.get("resourceVersion")
    if isinstance(rv, str) and rv.isdigit():
        meta["resourceVersion"] = str(int(rv) + 1)
    gen = meta.get("generation")
    if isinstance(gen, int) and before.get("spec") != after.get("spec"):
        meta["generation"] = gen + 1
