"""Pure planning helpers shared by every plugin: one module per rule.

* :mod:`.weights`   integer splits, scaling, share comparison
* :mod:`.patch`     the guarded JSON-patch builder and pointer escaping
* :mod:`.matching`  literal -> regex translation (escaped, anchored)
* :mod:`.routes`    managed-route precedence order
* :mod:`.ownership` markers and per-owner ledgers: cleanup exact, several owners per object
* :mod:`.sections`  a section's config glue: routing facts, validation, object references
* :mod:`.offline`   applying plans to in-memory objects (offline CLI, test oracle)
"""

from routers.planning.objects import LiveObjects, ObjectRef
from routers.planning.plan import Create, Delete, Note, Operation, Patch, Plan

__all__ = ["Create", "Delete", "LiveObjects", "Note", "ObjectRef", "Operation", "Patch", "Plan"]
