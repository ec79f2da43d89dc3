"""Deploying goalflow: ``goalflow setup`` (work pools, block types, automations), the
runner image, the local Prefect server."""

__all__: list[str] = []
