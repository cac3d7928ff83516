"""``privprep attack``: a real linkage attack on a run directory (issue 17).

Reference values are computed here with pandas from the tables themselves (class sizes by groupby),
never from privprep's own measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from privprep.pipeline.risk.linkage import link

QIS = ["age", "zip", "sex"]
HIERARCHIES = {
    "age": {"interval": {"widths": [5, 10, 20], "bottom": 18, "top": 90}},
    "zip": {"mask": {}},
    "sex": {"map": {"F": ["*"], "M": ["*"]}},
}


def population(rows: int = 1500, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    zips = [f"{z:05d}" for z in rng.choice(np.arange(10000, 99999), 40, replace=False)]
    return pd.DataFrame({
        "row_id": np.arange(rows, dtype=np.int64),
        "name": [f"person-{i}" for i in range(rows)],
        "age": rng.integers(18, 90, rows).astype(np.int64),
        "zip": rng.choice(zips, rows),
        "sex": rng.choice(["F", "M"], rows),
        "diagnosis": rng.choice(["flu", "cold", "asthma", "none"], rows, p=[0.1, 0.2, 0.1, 0.6]),
    })


def write_run(root: Path, frame: pd.DataFrame, k: int, cli, *, suppression: float = 0.05, name: str | None = None,
              extra_stages: list | None = None, keyring: Path | None = None) -> Path:
    data = root / "population.parquet"
    if not data.exists():
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
    out = root / (name or f"run-k{k}")
    config = {
        "version": 1, "input": str(data), "output": str(out),
        "columns": {"row_id": {"role": "insensitive"}, "name": {"role": "identifier"}, "age": {"role": "quasi_identifier"},
                    "zip": {"role": "quasi_identifier"}, "sex": {"role": "quasi_identifier"}, "diagnosis": {"role": "sensitive"}},
        "stages": [*(extra_stages or []), {"drop": {"columns": ["name"]}},
                   {"k_anonymity": {"k": k, "suppression_limit": suppression, "hierarchies": HIERARCHIES}}],
    }
    if keyring is not None:
        config["keyring"] = str(keyring)
    path = root / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("run", path, "--quiet")
    assert result.code == 0, result.err
    return out


def unique_share(frame: pd.DataFrame, columns: list[str]) -> float:
    sizes = frame.groupby(columns, dropna=False)[columns[0]].transform("size")
    return float((sizes == 1).mean())


@pytest.mark.parametrize("k", [2, 5, 10])
def test_k_anonymous_output_bounds_the_reidentification_rate_by_one_over_k(k: int, tmp_path: Path, cli) -> None:
    frame = population()
    run = write_run(tmp_path, frame, k, cli)
    result = cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", ",".join(QIS), "--truth", "row_id",
                 "--target", "diagnosis", "--json")
    assert result.code == 0, result.err
    r = json.loads(result.out)
    released = pq.read_table(run / "data").to_pandas()
    report = json.loads((run / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "k_anonymity")
    assert r["auxiliary_records"] == len(frame)
    assert r["reidentification_rate"] <= 1 / k and r["expected_reidentification_rate"] <= 1 / k
    assert r["linked_uniquely"] == 0 and r["reidentified_correctly"] == 0
    # every kept row's own record links to its class; a kept class of size s contributes s * 1/s = 1
    classes = released.groupby(QIS, dropna=False).ngroups
    assert r["expected_reidentification_rate"] == pytest.approx(classes / len(frame))
    assert r["unlinked"] == stage["suppressed_rows"] == len(frame) - len(released)
    # attribute disclosure: linked records whose released class has one diagnosis
    homogeneous = released.groupby(QIS, dropna=False)["diagnosis"].transform("nunique") == 1
    assert r["attribute_disclosure"]["disclosed"] == int(homogeneous.sum())


def test_the_same_attack_on_the_raw_input_reidentifies_every_unique_record(tmp_path: Path) -> None:
    frame = population()
    raw = pa.Table.from_pandas(frame, preserve_index=False)
    r = link(raw, raw, QIS, truth="row_id")
    expected = unique_share(frame, QIS)
    assert expected > 0.5  # the attack is no no-op: most people are unique on (age, zip, sex)
    assert r["reidentification_rate"] == pytest.approx(expected)
    assert r["reidentified_correctly"] == round(expected * len(frame))
    sizes = frame.groupby(QIS)["row_id"].transform("size")
    assert r["expected_reidentification_rate"] == pytest.approx(float((1 / sizes).mean()))


def test_a_k1_run_releases_the_raw_tuples_and_the_attack_succeeds_through_the_cli(tmp_path: Path, cli) -> None:
    frame = population()
    run = write_run(tmp_path, frame, 1, cli, suppression=0.0)
    result = cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", ",".join(QIS), "--truth", "row_id", "--json")
    r = json.loads(result.out)
    assert r["reidentification_rate"] == pytest.approx(unique_share(frame, QIS))


def test_a_subset_of_the_population_and_of_the_quasi_identifiers(tmp_path: Path, cli) -> None:
    frame = population()
    run = write_run(tmp_path, frame, 5, cli)
    known = frame.sample(300, random_state=1)[["row_id", "name", "age", "sex"]]
    aux = tmp_path / "voters.csv"
    known.to_csv(aux, index=False)
    r = json.loads(cli("attack", run, "--auxiliary", aux, "--on", "age,sex", "--truth", "row_id", "--json").out)
    assert r["auxiliary_records"] == 300
    assert r["expected_reidentification_rate"] <= 1 / 5 and r["reidentification_rate"] <= 1 / 5
    # the text form names counts and rates, never a value of either table
    text = cli("attack", run, "--auxiliary", aux, "--on", "age,sex").out
    assert "re-identification rate" in text
    for value in [*known["name"].head(20), *frame["zip"].unique()]:
        assert str(value) not in text


def test_record_adds_the_attack_to_report_json_and_report_html(tmp_path: Path, cli) -> None:
    frame = population()
    run = write_run(tmp_path, frame, 5, cli)
    before = (run / "report.json").read_text()
    result = cli("attack", run, "--auxiliary", tmp_path / "population.parquet", "--on", ",".join(QIS), "--truth", "row_id",
                 "--record")
    assert result.code == 0, result.err
    report = json.loads((run / "report.json").read_text())
    assert report["attack"]["auxiliary_records"] == len(frame) and report["attack"]["reidentified_correctly"] == 0
    assert {k: v for k, v in report.items() if k != "attack"} == json.loads(before)
    page = (run / "report.html").read_text()
    assert "id='attack'" in page and "Linkage attack" in page
    assert not list(run.glob(".*tmp*"))  # rewritten atomically: no temporary file left behind


def test_bad_input_exits_2_with_one_line(tmp_path: Path, cli) -> None:
    frame = population()
    run = write_run(tmp_path, frame, 5, cli)
    aux = tmp_path / "population.parquet"

    def refused(*args: object) -> str:
        result = cli("attack", run, "--auxiliary", *args)
        assert result.code == 2 and result.out == "", (result.code, result.out)
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
        return result.err

    no_sex = tmp_path / "no-sex.parquet"
    pq.write_table(pa.Table.from_pandas(frame.drop(columns=["sex"]), preserve_index=False), no_sex)
    assert "lacks column(s) sex" in refused(no_sex, "--on", "age,sex")
    assert "not quasi-identifiers" in refused(aux, "--on", "age,diagnosis")
    odd = frame.assign(sex=np.where(frame.row_id % 7 == 0, "X", frame.sex))  # a value the map hierarchy lacks
    odd_path = tmp_path / "odd.parquet"
    pq.write_table(pa.Table.from_pandas(odd, preserve_index=False), odd_path)
    err = refused(odd_path, "--on", "age,zip,sex")
    assert "incompatible with the run's hierarchy" in err and "'X'" not in err and " X " not in err


def test_a_run_without_k_anonymity_or_with_a_pseudonymized_key_is_refused(tmp_path: Path, cli, workspace) -> None:
    # a run without k_anonymity
    config = workspace.config()
    assert cli("run", config, "--quiet").code == 0
    result = cli("attack", workspace.out, "--auxiliary", workspace.input, "--on", "zip,age")
    assert result.code == 2 and "no k_anonymity stage" in result.err
    # a quasi-identifier pseudonymized before k_anonymity cannot be joined on
    frame = population()
    data = tmp_path / "population.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
    run = write_run(tmp_path, frame, 2, cli, name="pseudo", extra_stages=[{"pseudonymize": {"columns": ["zip"], "domain": "zip"}}],
                    keyring=workspace.keyring)
    result = cli("attack", run, "--auxiliary", data, "--on", "zip,age", "--config", tmp_path / "pseudo.yaml")
    assert result.code == 2 and "pseudonymized" in result.err and len(result.err.strip().splitlines()) == 1


def test_link_on_many_wide_columns_matches_pandas() -> None:
    """Eight columns of ~300 values each overflow one 64-bit class key: the join densifies on the way."""
    rng = np.random.default_rng(3)
    rows = 5000
    frame = pd.DataFrame({f"q{i}": rng.integers(0, 300, rows).astype(str) for i in range(8)})
    frame.loc[::97, "q3"] = None  # missing values are a category of their own
    frame["row"] = np.arange(rows)
    released = pa.Table.from_pandas(frame.iloc[::2], preserve_index=False)
    aux = pa.Table.from_pandas(frame, preserve_index=False)
    on = [f"q{i}" for i in range(8)]
    r = link(released, aux, on, truth="row")
    half = frame.iloc[::2]
    sizes = half.groupby(on, dropna=False).size().rename("size").reset_index()
    joined = frame.merge(sizes, on=on, how="left")
    assert r["linked"] == int(joined["size"].notna().sum())
    assert r["expected_reidentification_rate"] == pytest.approx(float((1 / joined["size"]).sum() / rows))
    assert r["reidentified_correctly"] == len(half)  # every released row is unique here and links to itself
