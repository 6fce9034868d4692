"""canary-routers istio plugin (being implemented)."""
