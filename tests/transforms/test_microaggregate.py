"""MDAV microaggregation: hand-worked groups and centroids, groups of at least k rows, the limits that
fail closed, and the same output from the Dask engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.schemas.errors import DataError, PrivacyError
from privprep.schemas.report import validate_report
from privprep.transforms.microaggregate import Microaggregate, mdav


def test_six_points_k3_exact_centroids() -> None:
    # 6 rows < 3k = 9 and >= 2k: one group around the point farthest from the centroid (16/3, 16/3 / 1000).
    # Both columns standardize to the same values (y is 1000·x's pattern), so squared distances from the
    # centroid are ∝ 56.9 (0,0), 47.2 (1,0), 47.2 (0,1), 43.6 (10,10), 53.9 (11,10), 53.9 (10,11):
    # (0,0) is farthest, its 2 nearest are (1,0) and (0,1) -> centroid (1/3, 1000/3); the rest -> (31/3, 31000/3).
    frame = pd.DataFrame({"x": [0, 1, 0, 10, 11, 10], "y": [0, 0, 1000, 10000, 10000, 11000], "id": range(6)})
    stage = Microaggregate(columns=["x", "y"], k=3)
    out = stage.apply(frame)
    assert out.x.tolist() == pytest.approx([1 / 3] * 3 + [31 / 3] * 3)
    assert out.y.tolist() == pytest.approx([1000 / 3] * 3 + [31000 / 3] * 3)
    assert out.id.tolist() == list(range(6))
    report = stage.report()
    assert (report["groups"], report["achieved_k"]) == (2, 3)
    # NCP of x: each group spans 1 of the range 11; of y: 1000 of 11000
    assert report["measures"]["ncp"] == pytest.approx({"x": 1 / 11, "y": 1 / 11})
    assert report["measures"]["discernibility"] == 18.0 and report["measures"]["c_avg"] == 1.0


def test_distances_are_standardized() -> None:
    # x spans 1, y spans 10: standardized, both are ±1, so the 4 points are equally far from the centroid
    # and from (0, 0) its neighbours (1, 0) and (0, 10) tie; ties go in value order (x, then y): r = (0, 0)
    # groups with (0, 10). Raw distances would pair (0, 0) with (1, 0) instead.
    out = Microaggregate(columns=["x", "y"], k=2).apply(pd.DataFrame({"x": [0, 1, 0, 1], "y": [0, 0, 10, 10]}))
    assert out.x.tolist() == [0.0, 1.0, 0.0, 1.0] and out.y.tolist() == [5.0] * 4


def test_duplicates_stay_together_and_groups_reach_k() -> None:
    # 7 rows: centroid 22/7; 7 is farthest; its nearest 7, 6, 5 make 3 rows -> centroid 6; the four 1s stay 1
    assert Microaggregate(columns=["x"], k=3).apply(pd.DataFrame({"x": [1, 1, 1, 1, 5, 6, 7]})).x.tolist() == [1.0] * 4 + [6.0] * 3
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 3000), "income": rng.lognormal(10, 1, 3000).round(-2)})
    for k in (2, 5, 17):
        out = Microaggregate(columns=["age", "income"], k=k).apply(frame)
        sizes = out.groupby(["age", "income"]).size()
        assert sizes.min() >= k
        # a group's centroid is the mean of its members
        assert np.allclose(frame.groupby([out.age, out.income]).age.mean().to_numpy(), sizes.index.get_level_values(0).to_numpy())


def test_mdav_unit_weights_are_textbook_mdav() -> None:
    # 9 points on a line, k=3 (9 >= 3k): r = 0 (farthest from 4, first of the ties 0 and 8) -> {0,1,2};
    # s = farthest from 0 -> 8 -> {8,7,6}; the 3 left {3,4,5}
    groups = mdav(np.arange(9.0)[:, None], np.ones(9), 3)
    assert groups.tolist() == [0, 0, 0, 2, 2, 2, 1, 1, 1]


def test_fails_closed() -> None:
    with pytest.raises(PrivacyError, match="max_tuples=10"):
        Microaggregate(columns=["x"], k=2, max_tuples=10).apply(pd.DataFrame({"x": range(20)}))
    with pytest.raises(DataError, match="missing values"):
        Microaggregate(columns=["x"], k=2).apply(pd.DataFrame({"x": [1.0, None, 2.0]}))
    with pytest.raises(DataError, match="needs numbers"):
        Microaggregate(columns=["x"], k=2).apply(pd.DataFrame({"x": ["a", "b"]}))
    with pytest.raises(PrivacyError, match="fewer than k=5"):
        Microaggregate(columns=["x"], k=5).apply(pd.DataFrame({"x": [1, 2]}))


def test_run_and_dask_engine_give_the_same_output(tmp_path: Path) -> None:
    pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from tests.pipeline.engines.test_dask_engine import config

    from privprep.pipeline import api
    from privprep.pipeline.files.sample import generate_sample

    data = tmp_path / "in"
    data.mkdir()
    table = generate_sample(2000, seed=3).drop_columns(["image"])
    pq.write_table(table.slice(0, 1200), data / "a.parquet", row_group_size=300)
    pq.write_table(table.slice(1200), data / "b.parquet", row_group_size=500)
    runs = {}
    for engine in ("streaming", "dask"):
        path = config(tmp_path, data, engine)
        document = yaml.safe_load(path.read_text())
        document["stages"] = [s for s in document["stages"] if "k_anonymity" not in s]
        document["stages"].insert(1, {"microaggregate": {"columns": ["income"], "k": 5}})
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        runs[engine] = api.run(path, **({"engine": "dask", "scheduler": "synchronous"} if engine == "dask" else {}))
    a, b = (pq.read_table(r.run_dir / "data") for r in runs.values())
    assert a.column("income").equals(b.column("income"))
    assert a.to_pandas().groupby("income").size().min() >= 5
    report = json.loads((runs["dask"].run_dir / "report.json").read_text())
    validate_report(report)
    entry = next(s for s in report["stages"] if s["name"] == "microaggregate")
    assert entry["achieved_k"] >= 5 and entry["rows_out"] == 2000


def test_config_allows_one_global_stage() -> None:
    from privprep.schemas.config import PipelineConfig, check_references

    document = {
        "version": 1, "input": "in.parquet", "output": "out/",
        "columns": {"age": {"role": "quasi_identifier"}, "zip": {"role": "quasi_identifier"}},
        "stages": [{"microaggregate": {"columns": ["age"], "k": 5}}],
    }
    assert check_references(PipelineConfig.model_validate(document)) == []
    document["stages"].append({"k_anonymity": {"k": 5, "hierarchies": {"zip": {"mask": {}}}}})
    problems = check_references(PipelineConfig.model_validate(document))
    assert problems == ["stages: at most one k_anonymity stage per pipeline (or one microaggregate stage: "
                        "each observes the input before the other's changes)"]
