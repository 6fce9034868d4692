"""canary-routers SMI plugin: TrafficSplit (split.smi-spec.io v1alpha1..v1alpha4) for Linkerd via
linkerd-smi and other SMI meshes.

Integer weights in every version, backends edited in place by Service name with guards, header
routes through an HTTPRouteGroup we own (v1alpha3/v1alpha4 only), exact cleanup through an
ownership marker and a ledger. SMI cannot mirror, and cannot combine a header route with a weight
without sending unmatched requests to the root Service: both are refused, never faked.
"""

from routers_smi.plugin import Plugin

__all__ = ["Plugin"]
