"""canary-routers smi plugin (being implemented)."""
