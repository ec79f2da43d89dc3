"""The ``goalflow`` command, one module per command group."""

__all__: list[str] = []
