"""canary-routers nginx plugin (being implemented)."""
