from routers.cli import entrypoint

entrypoint()
