"""The ``k_anonymity`` stage with ``algorithm: mondrian``: ETL use, the report's measures (values worked
by hand), t-closeness held in the output, and the Dask engine's identical output."""

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
from privprep.transforms.mondrian import MondrianKAnonymity

SEX = {"map": {"M": ["*"], "F": ["*"]}}


def test_apply_and_measures() -> None:
    frame = pd.DataFrame({"age": [20, 21, 22, 23, 30, 31, 32, 33], "sex": list("MMFFFMFM"), "note": range(8)})
    stage = MondrianKAnonymity(k=2, quasi_identifiers=["age", "sex"], hierarchies={"sex": SEX}, metric="discernibility")
    out = stage.apply(frame)
    assert out.groupby(["age", "sex"]).size().min() >= 2 and out.note.tolist() == list(range(8))
    report = stage.report()
    # classes [20, 21] M, [22, 23] F, [30, 32] F, [31, 33] M of 2 rows: age NCP (1+1+2+2)·2 / 13 / 8 rows
    m = report["measures"]
    assert (m["discernibility"], m["c_avg"]) == (16.0, 1.0)
    assert m["ncp"] == pytest.approx({"age": 12 / 104, "sex": 0.0}) and m["gcp"] == pytest.approx(6 / 104)
    assert report["information_loss"] == {"metric": "discernibility", "value": 16.0}
    assert (report["achieved_k"], report["equivalence_classes"], report["suppressed_rows"]) == (2, 4, 0)
    assert report["recoding"] == {"age": "interval", "sex": "hierarchy"} and report["levels"] == {}


def test_nu_entropy_of_local_recoding() -> None:
    # classes [1, 2] (values 1, 2) and [3, 4]: each value is 1 of 2 rows of its released value -> 4 · log2(2)
    stage = MondrianKAnonymity(k=2, quasi_identifiers=["x"], hierarchies={})
    stage.apply(pd.DataFrame({"x": [1, 2, 3, 4]}))
    assert stage.report()["information_loss"]["value"] == pytest.approx(4.0)


def test_t_closeness_holds_in_the_output() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 400), "dx": rng.choice(list("abcd"), 400, p=[0.4, 0.3, 0.2, 0.1])})
    out = MondrianKAnonymity(k=5, quasi_identifiers=["age"], hierarchies={}, t_closeness={"dx": 0.15}).apply(frame)
    overall = frame.dx.value_counts(normalize=True)
    for _, group in out.groupby("age"):
        dist = group.dx.value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert 0.5 * (dist - overall).abs().sum() <= 0.15 + 1e-12
        assert len(group) >= 5
    assert out.age.nunique() > 1


def test_non_numeric_without_hierarchy_and_unreachable() -> None:
    with pytest.raises(DataError, match="hierarchies.sex"):
        MondrianKAnonymity(k=2, quasi_identifiers=["sex"], hierarchies={}).apply(pd.DataFrame({"sex": list("MFMF")}))
    with pytest.raises(PrivacyError, match="fails the criteria"):
        MondrianKAnonymity(k=5, quasi_identifiers=["x"], hierarchies={}).apply(pd.DataFrame({"x": [1, 2, 3]}))


def test_a_nested_column_is_a_one_line_data_error() -> None:
    import pyarrow as pa

    stage = MondrianKAnonymity(k=2, quasi_identifiers=["zip"], hierarchies={})
    with pytest.raises(DataError, match="column 'zip' has nested type"):
        stage.output_schema(pa.schema([("zip", pa.list_(pa.string()))]))


def test_dask_engine_gives_the_same_output(tmp_path: Path) -> None:
    pytest.importorskip("dask")
    pytest.importorskip("distributed")
    from tests.pipeline.engines.test_dask_engine import config  # the sample pipeline over several partitions

    from privprep.pipeline import api
    from privprep.pipeline.files.sample import generate_sample

    data = tmp_path / "in"
    data.mkdir()
    table = generate_sample(3000, seed=7).drop_columns(["image"])
    pq.write_table(table.slice(0, 1700), data / "a.parquet", row_group_size=400)
    pq.write_table(table.slice(1700), data / "b.parquet", row_group_size=600)
    runs = {}
    for engine in ("streaming", "dask"):
        path = config(tmp_path, data, engine)
        document = yaml.safe_load(path.read_text())
        document["columns"]["income"]["role"] = "quasi_identifier"  # a numeric QI: cut into intervals
        for stage in document["stages"]:
            if "k_anonymity" in stage:
                stage["k_anonymity"].update(algorithm="mondrian", k=8)
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        runs[engine] = api.run(path, **({"engine": "dask", "scheduler": "synchronous"} if engine == "dask" else {}))
    a, b = (pq.read_table(r.run_dir / "data") for r in runs.values())
    for name in ("birth_date", "zip", "sex", "occupation", "income", "patient_id"):
        assert a.column(name).equals(b.column(name)), name
    assert a.column("income").to_pylist()[0].startswith("[")
    frame = a.to_pandas()
    assert frame.groupby(["birth_date", "zip", "sex", "occupation", "income"], dropna=False).size().min() >= 8
    assert frame.groupby(["birth_date", "zip", "sex", "occupation", "income"], dropna=False).diagnosis.nunique().min() >= 1
    ra, rb = (json.loads((r.run_dir / "report.json").read_text()) for r in runs.values())
    validate_report(ra)
    sa, sb = (next(s for s in r["stages"] if s["name"] == "k_anonymity") for r in (ra, rb))
    assert sa["algorithm"] == "mondrian" and sa["recoding"]["income"] == "interval"
    for key in ("equivalence_classes", "information_loss", "measures", "risk_after", "achieved_k"):
        assert sa[key] == sb[key], key
    html = (runs["streaming"].run_dir / "report.html").read_text()
    assert "<h3>Utility</h3>" in html and "[lo, hi] range per class" in html


def test_spilled_counts_give_the_same_partitions(tmp_path: Path) -> None:
    from tests.transforms.anonymity.test_external import mixed_table

    table = mixed_table(6000, seed=5)
    params = dict(k=4, quasi_identifiers=["zip", "age"], hierarchies={"zip": {"mask": {}}}, l_diversity={"dx": 2})
    outs = []
    for stage in (MondrianKAnonymity(**params, memory_tuples=None), MondrianKAnonymity(**params, memory_tuples=700, spill_dir=str(tmp_path))):
        for at in range(0, table.num_rows, 500):
            stage.observe(table.slice(at, 500))
        stage.decide()
        outs.append((stage.transform(table), stage.report()))
    assert outs[0][0].equals(outs[1][0])
    assert outs[0][1]["measures"] == outs[1][1]["measures"] and outs[0][1]["equivalence_classes"] > 100
    assert list(tmp_path.iterdir()) == []
