"""canary-routers Gateway API plugin: HTTPRoute, GRPCRoute, TCPRoute and TLSRoute.

Weights on the user's own rules, managed header and percentage-mirror rules that win Gateway
API's specificity precedence, exact cleanup through rule names plus a content-hash ledger, and
readiness from the routes' status conditions.
"""

from routers_gatewayapi.plugin import Plugin

__all__ = ["Plugin"]
