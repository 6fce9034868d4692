"""canary-routers plugin for Istio: VirtualService weights (http/tls/tcp), DestinationRule
subsets, header and mirror routes, delegates. Configured like Argo Rollouts'
``trafficRouting.istio``."""

from routers_istio.plugin import IstioPlugin

Plugin = IstioPlugin

__all__ = ["IstioPlugin", "Plugin"]
