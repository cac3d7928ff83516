"""The plan sorts stages by their base class once; the streaming engine's passes return what they
measured (a typed result per pass) instead of filling a dict they were given."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from privprep.pipeline.configs.config import load_config
from privprep.pipeline.engines.engine import PassResult, StreamingEngine, WriteResult, observers
from privprep.pipeline.engines.plan import Plan, build_plan
from privprep.pipeline.engines.progress import Progress
from privprep.pipeline.files.output_files import OutputFiles
from privprep.transforms import DpStats, Drop, Pseudonymize


@pytest.fixture
def plan(workspace) -> Plan:
    stages = [
        {"pseudonymize": {"columns": ["patient_id"]}},
        {"drop": {"columns": ["name"]}},
        {"dp_stats": {"epsilon": 0.5, "queries": [{"column": "income", "stat": "sum"}], "seed": 1}},
    ]
    budget = {"epsilon": 1.0, "ledger": str(workspace.root / "ledger.json")}
    return build_plan(load_config(workspace.config(stages=stages, budget=budget, io={"batch_rows": 3, "rows_per_file": 5})))


def test_the_plan_sorts_its_stages_by_kind_once(plan: Plan) -> None:
    assert [(i, type(s)) for i, s in plan.row_steps] == [(0, Pseudonymize), (1, Drop)]
    assert [(i, type(s)) for i, s in plan.observing] == [(2, DpStats)] == [(i, type(s)) for i, s in plan.releases]
    assert plan.sinks == [] and plan.passes == 2
    spec = plan.writer_spec
    assert (spec.rows_per_file, spec.compression, spec.schema.names) == (5, "zstd", plan.output_schema.names)


def test_each_pass_returns_its_seconds_by_stage_and_the_write_pass_its_rows(plan: Plan, tmp_path: Path) -> None:
    engine, progress = StreamingEngine(), Progress(quiet=True)
    observed = engine.observe(plan, *observers(plan), progress)
    assert type(observed) is PassResult and set(observed.seconds) == {2}
    written = engine.write(plan, tmp_path / "data", OutputFiles.for_plan(plan), progress)
    assert isinstance(written, WriteResult) and set(written.seconds) == {0, 1}
    assert (written.rows_in, written.rows_out) == (8, 8)  # the small table's 8 rows, none removed
    assert written.rows_in_by_stage == written.rows_out_by_stage == {0: 8, 1: 8}
    assert [pq.read_metadata(f).num_rows for f in written.files] == [5, 3]


def test_a_seconds_dict_of_the_old_signature_is_still_added_to(plan: Plan, tmp_path: Path) -> None:
    seconds: dict[int, float] = {2: 1.0}
    result = StreamingEngine().observe(plan, *observers(plan), Progress(quiet=True), seconds)
    assert seconds == {2: 1.0 + result.seconds[2]}
