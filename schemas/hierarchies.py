"""Generalization hierarchy specs (SPEC §5): how a quasi-identifier is coarsened, level by level.

>>> from pydantic import TypeAdapter
>>> spec = TypeAdapter(HierarchySpec).validate_python({"interval": {"widths": [5, 10], "bottom": 18, "top": 90}})
>>> spec.tag, spec.params.widths
('interval', [5, 10])
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import StrictModel, one_key_union

DateUnit = Literal["day", "month", "quarter", "year", "5y", "10y"]
_DATE_ORDER = ["day", "month", "quarter", "year", "5y", "10y"]


class IntervalHierarchy(StrictModel):
    """Numeric bands: level i groups values into bands of ``widths[i-1]`` starting at ``bottom`` (else 0);
    values below ``bottom`` are coded ``<bottom`` and values at or above ``top`` are coded ``>=top``, so
    the last band below ``top`` ends at ``top`` (widths 20 from 18, top 90: ``[78, 90)``)."""

    widths: Annotated[list[Annotated[int | float, Field(gt=0)]], Field(min_length=1)]
    bottom: int | float | None = None
    top: int | float | None = None

    @model_validator(mode="after")
    def _check(self) -> "IntervalHierarchy":
        if any(b % a for a, b in zip(self.widths, self.widths[1:])):
            raise ValueError("each width must be a multiple of the one before, so that bands nest")
        if self.bottom is not None and self.top is not None and self.bottom >= self.top:
            raise ValueError("bottom must be below top")
        return self


class MaskHierarchy(StrictModel):
    """ZIP-style masking: level i replaces the last i characters with ``char``."""

    char: Annotated[str, Field(min_length=1, max_length=1)] = "*"
    levels: Annotated[int, Field(ge=1)] | None = None


def _check_date_units(units: list[str]) -> list[str]:
    positions = [_DATE_ORDER.index(u) for u in units]
    if positions != sorted(set(positions)):
        raise ValueError(f"date levels must be distinct and ordered from fine to coarse: {', '.join(_DATE_ORDER)}")
    return units


DateLevels = Annotated[list[DateUnit], Field(min_length=1), AfterValidator(_check_date_units)]

HierarchySpec = one_key_union(
    "hierarchy",
    {
        "interval": IntervalHierarchy,
        "date": DateLevels,
        "mask": MaskHierarchy,
        "csv": Annotated[str, Field(min_length=1, description="path of an ARX-format hierarchy file")],
        "map": Annotated[dict[str, Annotated[list[str], Field(min_length=1)]], Field(min_length=1)],
    },
)
"""One generalization hierarchy: ``{interval: ...}``, ``{date: [...]}``, ``{mask: ...}``, ``{csv: PATH}``
or ``{map: {VALUE: [LEVEL1, ...]}}``."""

__all__ = ["DateUnit", "HierarchySpec", "IntervalHierarchy", "MaskHierarchy"]
