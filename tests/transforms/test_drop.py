from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from privprep.schemas.errors import DataError
from privprep.transforms import Drop, registry


def test_drop_arrow_and_pandas() -> None:
    table = pa.table({"a": [1], "b": [2], "c": [3]})
    assert Drop(columns=["b"]).apply(table).column_names == ["a", "c"]
    frame = pd.DataFrame({"a": [1], "b": [2]})
    out = Drop(columns=["a"]).apply(frame)
    assert list(out.columns) == ["b"] and list(frame.columns) == ["a", "b"]


def test_drop_unknown_column_names_it() -> None:
    with pytest.raises(DataError, match="'nope'|nope"):
        Drop(columns=["nope"]).apply(pa.table({"a": [1]}))


def test_registry_knows_implemented_and_planned_stages() -> None:
    assert registry.get("drop") is Drop
    assert {"pseudonymize", "drop", "mask"} <= set(registry.available())
    from privprep.schemas.errors import NotAvailableError

    from privprep.schemas.stages import STAGE_PARAMS

    for planned in (name for name in STAGE_PARAMS if name not in registry.available()):
        with pytest.raises(NotAvailableError, match=f"stage '{planned}' is not available yet"):
            registry.get(planned)
    with pytest.raises(NotAvailableError, match="unknown stage"):
        registry.get("no_such_stage")
    with pytest.raises(NotAvailableError, match=r"unknown stage 'tokenise' \(did you mean 'tokenize'\?\)"):
        registry.get("tokenise")
