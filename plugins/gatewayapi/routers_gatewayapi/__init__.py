"""canary-routers gatewayapi plugin (being implemented)."""
