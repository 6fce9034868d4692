"""canary-routers plugin for Traefik: the weights of a ``TraefikService`` weighted round robin
(``traefik.io/v1alpha1``, ``spec.weighted.services[]``) and, optionally, a canary mirror on the
mirroring ``TraefikService`` in front of it. Configured like Argo Rollouts'
``trafficRouting.traefik`` (``weightedTraefikServiceName``)."""

from routers_traefik.plugin import Plugin

__all__ = ["Plugin"]
