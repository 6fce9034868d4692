"""Reading backend weights: plain numbers, and the ``resource.Quantity`` strings of v1alpha1.

We only ever *write* plain integers (linkerd-smi serves v1alpha1 and v1alpha2 with conversion
``None``, so a quantity string written through v1alpha1 reaches integer-typed v1alpha2 clients
unchanged). Objects others wrote may still hold ``"500m"``; reading them must not fail.
"""

from __future__ import annotations

from routers.planning.weights import as_integers, parse_weight

__all__ = ["as_integers", "parse_weight"]
