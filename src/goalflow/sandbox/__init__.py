"""The Docker sandbox: its config, the engine side (the one module that imports
``docker``) and the images. Imports only the core."""

__all__: list[str] = []
