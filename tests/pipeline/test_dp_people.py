"""DP statistics at the level of people through the pipeline: a person's rows spread over files and
batches give the one-batch result, the Dask engine gives the streaming one, the ledger records the
key selection, and config mistakes are one-line exit-2 errors that write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline import api
from tests.pipeline.test_cli_errors import assert_clean_failure

N_PEOPLE, ROWS_EACH = 400, 6


def visits(seed: int = 2) -> pa.Table:
    """Visits of 400 people, 6 each, shuffled: a person's rows lie in several files and batches."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(N_PEOPLE), ROWS_EACH)
    order = rng.permutation(pid.size)
    regions = np.array(["north", "south", "east", "west", "island"])
    region = np.where(np.repeat(np.arange(N_PEOPLE), ROWS_EACH) == 0, "zz-lonely", regions[rng.integers(0, 4, pid.size)])
    return pa.table({
        "pid": pa.array([f"p{i:04d}" for i in pid[order]]),
        "region": pa.array(region[order]),
        "sex": pa.array(rng.choice(["f", "m"], pid.size)),
        "cost": pa.array(rng.uniform(0, 100, pid.size).round(2)),
    })


def write_input(folder: Path, table: pa.Table, files: int, row_group: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(table.num_rows), files)):
        pq.write_table(table.take(pa.array(part)), folder / f"part-{i}.parquet", row_group_size=row_group)
    return folder


def config(root: Path, data: Path, name: str, *, io: dict[str, int], **budget: Any) -> Path:
    document: dict[str, Any] = {
        "version": 1, "input": str(data), "output": str(root / name),
        "budget": {"epsilon": 10.0, "delta": 1e-5, "ledger": str(root / f"{name}-ledger.json"), "privacy_unit": "pid",
                   "max_partitions_contributed": 2, "max_contributions_per_partition": 2, **budget},
        "columns": {"pid": {"role": "identifier"}, "region": {"role": "quasi_identifier"},
                    "sex": {"role": "quasi_identifier", "categories": ["f", "m"]},
                    "cost": {"role": "sensitive", "bounds": [0, 100]}},
        "stages": [
            {"dp_stats": {"epsilon": 6.0, "seed": 9, "selection": {"epsilon": 2.0, "delta": 1e-6}, "queries": [
                {"column": "cost", "stat": "sum", "group_by": ["region"]},
                {"column": "cost", "stat": "mean", "group_by": ["sex"]},
                {"column": "pid", "stat": "count"},
                {"column": "cost", "stat": "quantile", "quantiles": [0.5], "bins": 20, "group_by": ["region", "sex"]},
            ]}},
            {"drop": {"columns": ["pid"]}},
        ],
        "io": io,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def releases(run_dir: Path) -> list[tuple[Any, ...]]:
    stats = json.loads((run_dir / "stats.json").read_text())
    return [(v["column"], v["stat"], json.dumps(v.get("group")), v["value"]) for v in stats["values"]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dp-people")
    table = visits()
    return {"one": write_input(root / "one", table, 1, table.num_rows), "split": write_input(root / "split", table, 3, 150),
            "groups": write_input(root / "groups", table, 1, 600)}


def test_rows_spread_over_files_and_batches_give_the_one_batch_result(tmp_path: Path, inputs: dict[str, Path]) -> None:
    whole = api.run(config(tmp_path, inputs["one"], "whole", io={"batch_rows": 100_000}))
    split = api.run(config(tmp_path, inputs["split"], "split", io={"batch_rows": 64, "partition_rows": 300}))
    assert releases(whole.run_dir) == releases(split.run_dir)
    stage = whole.report["stages"][0]
    assert stage["privacy_unit"] == "pid"
    assert stage["contribution_bounds"] == {"max_partitions_contributed": 2, "max_contributions_per_partition": 2}
    by_region, by_both = stage["partition_selection"]  # two private groupings share selection.epsilon
    assert (by_region["group_by"], by_region["keys_released"], by_region["epsilon"]) == (["region"], 4, 1.0)
    assert (by_both["group_by"], by_both["keys_released"]) == (["region", "sex"], 8)  # not the lonely person's keys
    keys = {json.dumps(v[2]) for v in releases(whole.run_dir)}
    text = "".join(p.read_text() for p in whole.run_dir.rglob("*.json")) + (whole.run_dir / "report.html").read_text()
    assert "zz-lonely" not in text and "island" not in text  # suppressed (or never seen) keys appear nowhere
    assert any("north" in k for k in keys)
    # count of people-rows: C = 1 partition x 2 rows, every person has 6 >= 2 rows: the exact bounded count is 800
    count = next(r for r in stage["releases"] if r["stat"] == "count")
    assert count["noise_scale"] == pytest.approx(2 / (4.0 / 4)) and abs(count["value"] - 2 * N_PEOPLE) <= 3 * count["error_95"]
    bounding = stage["local_not_dp"]["bounding"]
    assert bounding[2] == {"query": 2, "rows_kept": 2 * N_PEOPLE, "rows_dropped": (ROWS_EACH - 2) * N_PEOPLE}
    assert stage["local_not_dp"]["keys"][0] == {"group_by": ["region"], "keys_observed": 5, "keys_suppressed": 1}
    ledger = json.loads((tmp_path / "whole-ledger.json").read_text())
    (entry,) = ledger["entries"]
    assert (entry["epsilon"], entry["delta"]) == (6.0, 1e-6)
    assert entry["details"]["partition_selection"][0]["group_by"] == ["region"]
    assert "Privacy unit" in (whole.run_dir / "report.html").read_text()


def test_dask_engine_gives_the_streaming_result(tmp_path: Path, inputs: dict[str, Path]) -> None:
    pytest.importorskip("dask")
    io = {"batch_rows": 64, "partition_rows": 300}
    streaming = api.run(config(tmp_path, inputs["split"], "streaming", io=io))
    dask = api.run(config(tmp_path, inputs["split"], "dask", io=io), engine="dask", scheduler="synchronous")
    assert dask.report["engine"]["partitions"] > 1
    assert releases(streaming.run_dir) == releases(dask.run_dir)
    sa, sb = streaming.report["stages"][0], dask.report["stages"][0]
    assert sa["local_not_dp"] == sb["local_not_dp"] and sa["partition_selection"] == sb["partition_selection"]


@pytest.mark.parametrize("budget, needle", [
    ({"privacy_unit": "patient"}, "budget.privacy_unit: column 'patient' is not declared"),
    ({"max_partitions_contributed": 0}, "budget.max_partitions_contributed"),
    ({"max_contributions_per_partition": "many"}, "budget.max_contributions_per_partition"),
    ({"delta": 1e-7}, "selection.delta"),
])
def test_config_errors_are_one_line_and_write_nothing(tmp_path: Path, inputs: dict[str, Path], cli, budget, needle) -> None:
    path = config(tmp_path, inputs["one"], "bad", io={}, **budget)
    result = cli("run", path)
    assert_clean_failure(result, 2, needle)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad-ledger.json").exists()


def test_private_keys_without_a_selection_budget_fail_closed(tmp_path: Path, inputs: dict[str, Path], cli) -> None:
    path = config(tmp_path, inputs["one"], "closed", io={})
    document = yaml.safe_load(path.read_text())
    del document["stages"][0]["dp_stats"]["selection"]
    path.write_text(yaml.safe_dump(document))
    assert_clean_failure(cli("run", path), 2, "selection: {epsilon: E, delta: D}")
    assert not (tmp_path / "closed").exists()


def test_spilled_contributions_on_dask_processes_give_the_in_memory_result(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """``memory_rows`` below the contributions: tables spill to disk in every worker process and on
    the client, travel pickled, and the released values do not change."""
    pytest.importorskip("dask")
    memory = api.run(config(tmp_path, inputs["one"], "memory", io={"batch_rows": 100_000}))
    path = config(tmp_path, inputs["groups"], "spilled", io={"batch_rows": 500, "partition_rows": 1800})  # 1800 + 600 rows
    document = yaml.safe_load(path.read_text())
    document["stages"][0]["dp_stats"]["memory_rows"] = 1024
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    spilled = api.run(path, engine="dask", scheduler="processes")
    assert releases(memory.run_dir) == releases(spilled.run_dir)
    assert memory.report["stages"][0]["local_not_dp"] == spilled.report["stages"][0]["local_not_dp"]


@pytest.mark.parametrize("stage, message", [
    ({"drop": {"columns": ["pid"]}}, "which this stage drops"),
    ({"encrypt": {"columns": ["pid"]}}, "which this stage encrypts at random"),
])
def test_training_over_people_refuses_a_unit_the_pipeline_drops_or_encrypts(stage, message) -> None:
    from privprep.schemas.config import PipelineConfig, check_references

    cfg = PipelineConfig.model_validate({
        "version": 1, "input": "in.parquet", "output": "out/",
        "budget": {"epsilon": 4, "ledger": "l.json", "privacy_unit": "pid"},
        "columns": {"pid": {"role": "identifier"}, "image": {"role": "insensitive"},
                    "label": {"role": "insensitive", "categories": [0, 1]}},
        "stages": [stage, {"train": {"image": "image", "label": "label", "target_epsilon": 1.0}}],
    })
    problems = check_references(cfg)
    assert any(message in p and p.startswith("stages[0]") for p in problems), problems
