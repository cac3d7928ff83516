"""``privprep attack`` and ``privprep sweep`` on a Mondrian run (local recoding): raw auxiliary values
matched against the released boxes. Reference values are computed here with pandas from the tables
themselves (class sizes by groupby on the released columns, rows joined by order), never from
privprep's own measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.risk.linkage_boxes import HierarchyColumn, IntervalColumn, link_boxes
from tests.pipeline.risk.test_attack import QIS, population

HIERARCHIES = {"zip": {"mask": {}}, "sex": {"map": {"F": ["*"], "M": ["*"]}}}  # age is numeric: cut into ranges


def write_config(root: Path, frame: pd.DataFrame, k: int, name: str = "run") -> Path:
    data = root / "population.parquet"
    if not data.exists():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
    config = {
        "version": 1, "input": str(data), "output": str(root / name),
        "columns": {"row_id": {"role": "insensitive"}, "name": {"role": "identifier"}, "age": {"role": "quasi_identifier"},
                    "zip": {"role": "quasi_identifier"}, "sex": {"role": "quasi_identifier"}, "diagnosis": {"role": "sensitive"}},
        "stages": [{"drop": {"columns": ["name"]}},
                   {"k_anonymity": {"algorithm": "mondrian", "k": k, "hierarchies": HIERARCHIES}}],
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def mondrian_run(root: Path, frame: pd.DataFrame, k: int, cli) -> Path:
    config = write_config(root, frame, k, f"run-k{k}")
    result = cli("run", config, "--quiet")
    assert result.code == 0, result.err
    return root / f"run-k{k}"


def expected_rate(released: pd.DataFrame, on: list[str]) -> float:
    """Aux = input: each record's class is the class of its own row (Mondrian keeps every row, in order)."""
    sizes = released.groupby(on, dropna=False)[on[0]].transform("size")
    return float((1.0 / sizes).sum() / len(released))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    data = population()
    data.loc[data.row_id % 97 == 0, "age"] = None  # missing ages: released as null or '*'
    return data


@pytest.mark.parametrize("k", [2, 5, 10])
def test_mondrian_output_bounds_the_reidentification_rate_by_one_over_k(k: int, frame: pd.DataFrame, tmp_path: Path, cli) -> None:
    run = mondrian_run(tmp_path, frame, k, cli)
    result = cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", ",".join(QIS), "--truth", "row_id",
                 "--target", "diagnosis", "--json")
    assert result.code == 0, result.err
    r = json.loads(result.out)
    released = pq.read_table(run / "data").to_pandas()
    assert len(released) == len(frame) and (released["row_id"].to_numpy() == frame["row_id"].to_numpy()).all()
    assert r["algorithm"] == "mondrian" and r["recoding"] == {"age": "interval", "zip": "hierarchy", "sex": "hierarchy"}
    assert r["auxiliary_records"] == len(frame) and r["linked"] == len(frame) and r["unlinked"] == 0
    assert r["linked_uniquely"] == 0 and r["reidentified_correctly"] == 0
    assert r["reidentification_rate"] <= 1 / k and r["expected_reidentification_rate"] <= 1 / k
    assert r["expected_reidentification_rate"] == pytest.approx(expected_rate(released, QIS))
    assert r["smallest_linked_class"] == released.groupby(QIS, dropna=False).size().min() >= k
    homogeneous = released.groupby(QIS, dropna=False)["diagnosis"].transform("nunique") == 1
    assert r["attribute_disclosure"]["disclosed"] == int(homogeneous.sum())
    # a subset of the columns: projections of boxes overlap, a record links to the union of the classes it lies in
    sub = json.loads(cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", "age,sex", "--json").out)
    assert sub["linked"] == len(frame) and sub["expected_reidentification_rate"] <= r["expected_reidentification_rate"]


def test_the_released_zip_labels_stand_at_varying_levels_and_every_record_links(frame: pd.DataFrame, tmp_path: Path, cli) -> None:
    run = mondrian_run(tmp_path, frame, 5, cli)
    released = pq.read_table(run / "data").to_pandas()
    levels = released["zip"].str.count(r"\*").where(released["zip"] != "*", 5)
    assert levels.nunique() >= 2  # local recoding: the hierarchy column is released at several levels
    r = json.loads(cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", "zip", "--json").out)
    assert r["linked"] == len(frame)
    # each record lies in the zip classes whose label is its zip masked at some level
    labels = released["zip"].unique()
    sizes = released.groupby("zip")["zip"].size()
    union = [sum(int(sizes[lab]) for lab in labels if lab == "*" or (len(lab) == len(z) and all(a == b or a == "*" for a, b in zip(lab, z))
                                                                      and lab.rstrip("*") == z[: len(lab.rstrip("*"))]))
             for z in frame["zip"]]
    assert r["expected_reidentification_rate"] == pytest.approx(float(np.mean(1.0 / np.array(union))))


def test_a_record_outside_every_box_does_not_link(frame: pd.DataFrame, tmp_path: Path, cli) -> None:
    run = mondrian_run(tmp_path, frame, 5, cli)
    known = frame.iloc[[0, 1, 2, 3]].copy()
    known["age"] = [frame["age"].iloc[0], 500, -5, frame["age"].iloc[3]]  # records 1 and 2: beyond every released range
    aux = tmp_path / "known.parquet"
    pq.write_table(pa.Table.from_pandas(known, preserve_index=False), aux)
    r = json.loads(cli("attack", run, "--auxiliary", aux, "--on", ",".join(QIS), "--truth", "row_id", "--json").out)
    released = pq.read_table(run / "data").to_pandas()
    sizes = released.groupby(QIS, dropna=False)["row_id"].transform("size")  # records 0 and 3 lie in their own rows' classes
    assert r["auxiliary_records"] == 4 and r["linked"] == 2 and r["unlinked"] == 2 and r["reidentified_correctly"] == 0
    assert r["expected_reidentification_rate"] == pytest.approx((1 / sizes.iloc[0] + 1 / sizes.iloc[3]) / 4)


def test_union_of_overlapping_boxes_and_missing_values() -> None:
    released = pa.table({"age": ["[20, 29]", "[20, 29]", "[25, 35]", "[25, 35]", "[25, 35]", "*", None, "[40, 40]"],
                         "id": [0, 1, 2, 3, 4, 5, 6, 7], "dx": ["a", "a", "a", "a", "a", "b", "c", "d"]})
    ages = pa.array([27, 22, 36, None, 40, 50])
    r = link_boxes(released, {"age": IntervalColumn(ages, "age")}, ["age"], target="dx", truth="id",
                   auxiliary_truth=pa.array([2, 0, 5, 6, 7, 9]))
    # 27: [20,29] + [25,35] + * = 6 rows; 22: [20,29] + * = 3; 36: * = 1; None: * + null = 2; 40: [40,40] + * = 2; 50: * = 1
    sizes = np.array([6, 3, 1, 2, 2, 1])
    assert r["linked"] == 6 and r["linked_uniquely"] == 2 and r["smallest_linked_class"] == 1
    assert r["expected_reidentification_rate"] == pytest.approx(float((1 / sizes).sum() / 6))
    assert r["reidentified_correctly"] == 1  # 36 links to row 5 alone, its truth; 50 links to row 5, truth 9
    assert r["attribute_disclosure"]["disclosed"] == 2  # 36 and 50 learn 'b'; every union of several classes mixes values


def test_hierarchy_column_matches_a_label_at_any_level() -> None:
    # ancestors of three distinct values: level 0 (the value), level 1, level 2 (top)
    ancestors = [pa.array(["Cook", "Lawyer", "Nurse"]), pa.array(["Service", "Professional", "Professional"]),
                 pa.array(["*", "*", "*"])]
    codes = np.array([0, 1, 2, 2, 1])
    released = pa.table({"job": ["Cook", "Cook", "Professional", "Professional", "Professional", "Nurse", "Nurse"]})
    r = link_boxes(released, {"job": HierarchyColumn(codes, ancestors)}, ["job"])
    # Cook -> 2 rows; Lawyer -> Professional (3); Nurse -> Professional + Nurse (5)
    sizes = np.array([2, 3, 5, 5, 3])
    assert r["linked"] == 5 and r["expected_reidentification_rate"] == pytest.approx(float((1 / sizes).mean()))


def test_chunked_matching_gives_the_same_figures() -> None:
    rng = np.random.default_rng(5)
    lo = rng.integers(0, 1000, 300)
    labels = [f"[{a}, {a + w}]" for a, w in zip(lo, rng.integers(0, 50, 300))]
    released = pa.table({"x": pa.array(labels).take(pa.array(rng.integers(0, 300, 2000))),
                         "y": pa.array(rng.choice(["a", "b", "*"], 2000))})
    xs, ys = rng.integers(0, 1100, 5000), rng.integers(0, 2, 5000)
    ancestors = [pa.array(["a", "b"]), pa.array(["*", "*"])]

    def run(cells: int) -> dict:
        return link_boxes(released, {"x": IntervalColumn(pa.array(xs), "x"), "y": HierarchyColumn(ys, ancestors)}, ["x", "y"],
                          cells=cells)

    whole, chunked = run(10**9), run(5000)  # one block with full tables / many chunks with per-chunk tables
    assert whole == chunked
    # reference: a pandas cross join
    rel = released.to_pandas()
    sizes = rel.groupby(["x", "y"]).size().rename("n").reset_index()
    sizes[["lo", "hi"]] = sizes["x"].str.extract(r"\[(\d+), (\d+)\]").astype(int)
    aux = pd.DataFrame({"x": xs, "y": np.array(["a", "b"])[ys], "rec": np.arange(5000)})
    cross = aux.merge(sizes, how="cross", suffixes=("", "_c"))
    hit = cross[(cross.lo <= cross.x) & (cross.x <= cross.hi) & ((cross.y_c == cross.y) | (cross.y_c == "*"))]
    total = hit.groupby("rec")["n"].sum().reindex(range(5000), fill_value=0).to_numpy()
    assert whole["linked"] == int((total > 0).sum())
    assert whole["expected_reidentification_rate"] == pytest.approx(float((1 / total[total > 0]).sum() / 5000))


def test_text_in_an_interval_column_exits_2_with_one_line(frame: pd.DataFrame, tmp_path: Path, cli) -> None:
    run = mondrian_run(tmp_path, frame, 5, cli)
    odd = frame.assign(age=frame["age"].astype("Int64").astype(str).str.replace("1", "one"))
    aux = tmp_path / "odd.parquet"
    pq.write_table(pa.Table.from_pandas(odd, preserve_index=False), aux)
    result = cli("attack", run, "--auxiliary", aux, "--on", "age,sex")
    assert result.code == 2 and result.out == "" and len(result.err.strip().splitlines()) == 1
    assert "interval" in result.err and "Traceback" not in result.err


def test_sweep_of_a_mondrian_config_attacks_each_k_within_one_over_k(frame: pd.DataFrame, tmp_path: Path, cli) -> None:
    config = write_config(tmp_path, frame, 5)
    result = cli("sweep", config, "--k", "2,5,10", "--out", tmp_path / "sweep", "-q")
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["k"] for r in doc["k"]] == [10, 5, 2] and all(r["status"] == "ok" for r in doc["k"])
    for row in doc["k"]:
        released = pq.read_table(tmp_path / "sweep" / row["run"] / "data").to_pandas()
        attack = row["attack"]
        assert attack["linked"] == len(frame) and attack["linked_uniquely"] == 0 and attack["reidentified_correctly"] == 0
        assert attack["reidentification_rate"] <= 1 / row["k"] and attack["expected_reidentification_rate"] <= 1 / row["k"]
        assert attack["expected_reidentification_rate"] == pytest.approx(expected_rate(released, QIS))
    assert doc["attack"]["raw_input"]["reidentification_rate"] > 0.5


def test_record_on_a_mondrian_run_says_how_it_matched(frame: pd.DataFrame, tmp_path: Path, cli) -> None:
    run = mondrian_run(tmp_path, frame, 5, cli)
    result = cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", ",".join(QIS), "--record")
    assert result.code == 0, result.err
    assert "released ranges and labels" in result.out
    report = json.loads((run / "report.json").read_text())
    assert report["attack"]["algorithm"] == "mondrian" and report["attack"]["linked"] == len(frame)
    assert "Mondrian boxes" in (run / "report.html").read_text()
