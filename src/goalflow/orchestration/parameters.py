"""The goal flow's parameters as a deployment's run form shows them.

The goal comes first and is required; then a saved plan (a file or an object) and the
options most runs set (:data:`FORM_OPTIONS`); every other option of
:class:`~goalflow.settings.GoalOptions` sits in one nested section, ``advanced``
(:class:`AdvancedOptions`, made from GoalOptions' own fields: one description for the
CLI, the environment and the form). In that section a field left empty is not sent, so
the worker's setting (``GOALFLOW_*``, then a block) decides it, as it does for an option
the CLI is not given; a yes/no option there keeps its "None" choice for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    create_model,
    model_serializer,
)
from pydantic.fields import FieldInfo

from goalflow.settings import GoalOptions

__all__ = ["FORM_OPTIONS", "AdvancedOptions", "flow_parameters", "given_options"]

FORM_OPTIONS = ("model", "max_usd", "max_seconds", "approve")
"""The options that are parameters of their own, after the goal and the plan."""


def _empty_is_unset(schema: dict[str, Any]) -> None:
    """An optional field as the form's plain input (a number, a text, a choice), not as
    a switch between its type and "None": an input left empty sends nothing. A yes/no
    field keeps the switch, since a switch left alone would send "no"."""
    for field in schema.get("properties", {}).values():
        kinds = field.get("anyOf", [])
        given = [kind for kind in kinds if kind != {"type": "null"}]
        if len(kinds) == 2 and len(given) == 1 and given[0].get("type") != "boolean":
            del field["anyOf"]
            field.update(given[0])
            field.pop("default", None)


class _Section(BaseModel):
    """A nested section of the run form: the options set in it, nothing for the rest."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_empty_is_unset)

    @model_serializer(mode="wrap")
    def _set_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # What Prefect stores as the run's parameters and shows as the form's defaults.
        return {name: value for name, value in handler(self).items() if value is not None}


def _unset_by_default(name: str, field: FieldInfo) -> tuple[Any, FieldInfo]:
    """``field`` with its constraints, unset (None) until given, titled by its name (as
    the CLI's JSON and the environment spell it); its description says the default an
    empty field takes, unless the worker sets another."""
    said = field.description or ""
    if field.default is not None:
        said += f" Empty: the worker's setting, by default {field.default!r}."
    return field.annotation | None, FieldInfo.merge_field_infos(  # type: ignore[operator]
        field, default=None, description=said, title=name
    )


if TYPE_CHECKING:
    AdvancedOptions: TypeAlias = _Section
else:
    AdvancedOptions = create_model(
        "AdvancedOptions",
        __base__=_Section,
        __doc__="The goal's other options; each left empty takes the worker's setting.",
        **{
            name: _unset_by_default(name, field)
            for name, field in GoalOptions.model_fields.items()
            if name not in FORM_OPTIONS
        },
    )


def given_options(advanced: BaseModel, **top: Any) -> GoalOptions:
    """The options a flow run was given: ``top`` (the FORM_OPTIONS) and those set in its
    ``advanced`` section, checked together. None and "" are unset (a form's field that
    was typed in, then cleared, may send ""): the worker's setting stays."""
    given = {**top, **advanced.model_dump()}
    return GoalOptions.given({name: value for name, value in given.items() if value != ""})


def flow_parameters(options: GoalOptions) -> dict[str, Any]:
    """The options ``options`` sets, as the goal flow's parameters."""
    values = options.model_dump(exclude_unset=True)
    parameters = {name: values.pop(name) for name in FORM_OPTIONS if name in values}
    return {**parameters, "advanced": values} if values else parameters
