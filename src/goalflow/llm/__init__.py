"""The model side: the openai client (the one module that imports ``openai``),
endpoint selection, the offline model and the ledger broker. Imports only the core."""

__all__: list[str] = []
