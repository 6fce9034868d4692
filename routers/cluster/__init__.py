"""Cluster layer: the only code that talks to the API server (official kubernetes client)."""
