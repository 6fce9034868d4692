"""canary-routers plugin for ingress-nginx canary Ingresses.

One canary Ingress per stable Ingress carries the weight (``canary-weight``, plus
``canary-weight-total`` above 100) and one header route (``canary-by-header`` with ``-value`` or
an anchored ``-pattern``); the stable Ingress carries a 100% mirror (``mirror-target``). Ledgers
on both make cleanup exact; the canary Ingress is deleted on cleanup, guarded by its uid.
"""

from routers_nginx.plugin import Plugin

__all__ = ["Plugin"]
