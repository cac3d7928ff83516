"""A new stage is one module: its params model and its class, registered here, run through the whole
pipeline (config check, budget check, both passes, ledger, report) with no other file touched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from privprep.schemas.base import ColumnList
from privprep.schemas.jsonschema import config_schema, dumps
from privprep.schemas.stages import Epsilon, StageKind, StageParams
from privprep.transforms import registry
from privprep.transforms.base import MapStage, ReleaseStage, Stage, StageContext
from tests.conftest import small_table, tree_digest

SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "config.schema.json"


class UpperParams(StageParams):
    """Upper-case text columns (a map stage that protects nothing)."""

    columns: ColumnList

    def referenced(self) -> list[str]:
        return list(self.columns)


class Upper(MapStage):
    name: ClassVar[str] = "upper"
    Params = UpperParams

    def __init__(self, *, columns: list[str]) -> None:
        self.columns = list(columns)

    @classmethod
    def from_config(cls, params: Any, *, context: StageContext) -> "Upper":
        return cls(columns=params.columns)

    def input_columns(self) -> list[str]:
        return list(self.columns)

    def transform(self, table: pa.Table) -> pa.Table:
        for column in self.columns:
            table = table.set_column(table.schema.get_field_index(column), column, pc.utf8_upper(table.column(column)))
        return table

    def report(self) -> dict[str, Any]:
        return {"columns": list(self.columns)}


class RowCountParams(StageParams):
    """A release that states its planned spend: the config and ledger checks read it from here."""

    kind: ClassVar[StageKind] = "release"
    column: str
    epsilon: Epsilon

    def referenced(self) -> list[str]:
        return [self.column]

    def planned_spend(self, *, budget_delta: float) -> tuple[float, float]:
        return self.epsilon, 0.0


class RowCount(ReleaseStage):
    """Test double of a release: spends its epsilon, then releases the exact count (no noise: not DP)."""

    name: ClassVar[str] = "row_count"
    Params = RowCountParams

    def __init__(self, *, column: str, epsilon: float) -> None:
        self.column, self.epsilon, self.rows = column, epsilon, 0

    @classmethod
    def from_config(cls, params: Any, *, context: StageContext) -> "RowCount":
        return cls(column=params.column, epsilon=params.epsilon)

    def input_columns(self) -> list[str]:
        return [self.column]

    def observe(self, table: pa.Table) -> None:
        self.rows += table.num_rows

    def merge(self, other: Stage) -> None:
        assert isinstance(other, RowCount)
        self.rows += other.rows

    def release(self, ledger: Any) -> list[dict[str, Any]]:
        ledger.spend(self.epsilon)
        return [{"column": self.column, "stat": "count", "value": self.rows}]


@pytest.fixture
def plugged() -> Iterator[None]:
    registry.register(Upper)
    registry.register(RowCount)
    try:
        yield
    finally:
        registry.unregister("upper")
        registry.unregister("row_count")


STAGES = [
    {"pseudonymize": {"columns": ["patient_id"]}},
    {"drop": {"columns": ["name"]}},
    {"upper": {"columns": ["diagnosis"]}},
    {"row_count": {"column": "income", "epsilon": 0.25}},
]


def test_a_stage_module_registers_and_runs_through_the_runner(plugged, workspace, cli) -> None:
    before = tree_digest(workspace.input)
    budget = {"epsilon": 1.0, "ledger": str(workspace.root / "ledger.json")}
    config = workspace.config(stages=STAGES, budget=budget, io={"batch_rows": 3})
    assert cli("run", config, "--quiet").code == 0
    out = pq.read_table(workspace.out / "data")
    assert out.column("diagnosis").to_pylist() == [v.upper() for v in small_table().column("diagnosis").to_pylist()]
    report = json.loads((workspace.out / "report.json").read_text())
    upper, count = report["stages"][2], report["stages"][3]
    assert (upper["name"], upper["kind"], upper["plugin"]) == ("upper", "map", f"{__name__}.Upper")
    assert (upper["rows_in"], upper["rows_out"], upper["columns"]) == (8, 8, ["diagnosis"])
    assert (count["kind"], count["releases"]) == ("release", [{"column": "income", "stat": "count", "value": 8}])
    assert report["budget"]["spent_this_run"] == 0.25 and report["budget"]["remaining_epsilon"] == 0.75
    ledger = json.loads((workspace.root / "ledger.json").read_text())
    assert [(e["stage"], e["kind"], e["epsilon"]) for e in ledger["entries"]] == [("stages[3].row_count", "row_count", 0.25)]
    assert tree_digest(workspace.input) == before


def test_its_planned_spend_is_checked_before_any_data_is_read(plugged, workspace, cli) -> None:
    ledger = workspace.root / "ledger.json"
    without = cli("run", workspace.config(stages=STAGES), "--quiet")
    assert without.code == 2 and "stages[3].row_count: a 'row_count' stage spends privacy budget" in without.err
    too_big = cli("run", workspace.config(stages=STAGES, budget={"epsilon": 0.2, "ledger": str(ledger)}), "--quiet")
    assert too_big.code == 2 and "stages[3].row_count: epsilon 0.25 is more than the whole budget.epsilon 0.2" in too_big.err
    config = workspace.config(stages=STAGES, budget={"epsilon": 0.4, "ledger": str(ledger)})
    assert cli("run", config, "--quiet").code == 0
    again = cli("run", config, "--quiet", "--overwrite")  # 0.25 + 0.25 > 0.4: refused, the first run's output stays
    assert again.code == 1 and "budget exceeded" in again.err
    assert len(json.loads(ledger.read_text())["entries"]) == 1


def test_unregistering_restores_the_config_contract(workspace, cli) -> None:
    registry.register(Upper)
    registry.unregister("upper")
    result = cli("run", workspace.config(stages=STAGES[:3]), "--quiet")
    assert result.code == 2 and "unknown" in result.err and "upper" in result.err
    assert dumps(config_schema()) == SCHEMA.read_text()


def test_a_stage_must_be_one_of_the_four_kinds_its_params_agree_on() -> None:
    class Loose(Stage):
        name: ClassVar[str] = "loose"
        kind = "map"
        Params = UpperParams

        @classmethod
        def from_config(cls, params: Any, *, context: StageContext) -> "Loose":
            return cls()

        def input_columns(self) -> list[str]:
            return []

    with pytest.raises(TypeError, match="must subclass MapStage, GlobalStage, ReleaseStage or SinkStage"):
        registry.register(Loose)

    class Mislabelled(Upper):
        name: ClassVar[str] = "mislabelled"
        Params = RowCountParams

    with pytest.raises(ValueError, match="'mislabelled' is a map stage, but its params model says release"):
        registry.register(Mislabelled)
    assert "mislabelled" not in registry.available() and "loose" not in registry.available()
