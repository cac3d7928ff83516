"""Shared pydantic building blocks for the config models."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, create_model

#: A column name as it appears in the data.
ColumnName = Annotated[str, Field(min_length=1)]
#: A non-empty list of distinct column names.
def _distinct(names: list[str]) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"column(s) listed more than once: {', '.join(repeated)}")
    return names


ColumnList = Annotated[list[ColumnName], Field(min_length=1), AfterValidator(_distinct)]
#: A key id of a keyring (never the key material itself).
KeyId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
#: A pseudonym or token domain: names the kind of identifier, so equal values in two tables join.
Domain = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]


class StrictModel(BaseModel):
    """A frozen model that rejects unknown keys, so a typo in a config is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def single_key_tag(value: Any) -> str | None:
    """Discriminator of ``{name: params}`` entries: the one key of the mapping."""
    if isinstance(value, dict):
        return next(iter(value)) if len(value) == 1 else None
    return getattr(value, "tag", None)


def one_key_union(kind: str, options: dict[str, type[BaseModel] | Any]) -> Any:
    """Build the type of a ``{name: params}`` entry whose name picks the params model.

    Each option becomes a model with exactly one field named after it; pydantic dispatches on the
    key, so errors point into the right params model (``stages.0.drop.columns``) and the JSON
    Schema is a ``oneOf`` of single-key objects.
    """
    members = []
    for name, params in options.items():
        entry: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{_camel(name)}{_camel(kind)}",
            __base__=_Entry,
            **{name: (params, ...)},
        )
        entry.tag = name  # type: ignore[attr-defined]
        entry.__module__ = __name__  # importable by name, so configs pickle (partitioned engines ship them)
        globals()[entry.__name__] = entry
        members.append(Annotated[entry, Tag(name)])
    union = members[0]
    for member in members[1:]:
        union = union | member  # type: ignore[operator]
    return Annotated[
        union,
        Discriminator(
            single_key_tag,
            custom_error_type=f"invalid_{kind}",
            custom_error_message=f"each {kind} must be a mapping with exactly one key, one of: {', '.join(options)}",
        ),
    ]


class _Entry(StrictModel):
    """A ``{name: params}`` entry; ``tag`` and ``params`` read it back."""

    tag: ClassVar[str] = ""  # set per subclass

    @property
    def params(self) -> Any:
        return getattr(self, type(self).tag)  # type: ignore[arg-type]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
