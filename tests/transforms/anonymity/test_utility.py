"""The utility measures of the full-domain stage (hand-worked), equal whether its counts were held in
memory or spilled to disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from privprep.transforms import KAnonymity
from tests.transforms.anonymity.test_external import mixed_table


def test_full_domain_measures_by_hand() -> None:
    # zip mask, k=2, 1 row may go: level 1 gives 1000* (2 rows), 1001* (2), 2000* (1: suppressed).
    # NCP: 1000* and 1001* cover 2 of 5 values -> (2-1)/(5-1) = 0.25 each; the suppressed row costs 1:
    # (4 · 0.25 + 1) / 5 = 0.4. Discernibility 2² + 2² + 1 · 5 = 13; C_AVG (4 rows / 2 classes) / 2 = 1.
    stage = KAnonymity(k=2, quasi_identifiers=["zip"], hierarchies={"zip": {"mask": {}}}, suppression_limit=0.2)
    stage.apply(pa.table({"zip": ["10001", "10002", "10011", "10012", "20001"]}))
    assert stage.levels_ == {"zip": 1}
    m = stage.report()["measures"]
    assert (m["discernibility"], m["c_avg"]) == (13.0, 1.0)
    assert m["ncp"]["zip"] == pytest.approx(0.4) and m["gcp"] == pytest.approx(0.4)
    # numeric: [20, 30) holds 20 and 24 (range 4), [30, 40) 31 and 39 (range 8), the column's range 19
    stage = KAnonymity(k=2, quasi_identifiers=["age"], hierarchies={"age": {"interval": {"widths": [10]}}})
    stage.apply(pa.table({"age": [20, 24, 31, 39]}))
    assert stage.report()["measures"]["ncp"]["age"] == pytest.approx((2 * 4 + 2 * 8) / 19 / 4)


def test_spilled_counts_give_the_same_measures(tmp_path: Path) -> None:
    table = mixed_table(6000, seed=3)
    params = dict(k=4, quasi_identifiers=["zip", "age"], hierarchies={"zip": {"mask": {}}, "age": {"interval": {"widths": [5, 10, 20, 40]}}},
                  suppression_limit=0.03, l_diversity={"dx": 2})
    memory = KAnonymity(**params, memory_tuples=None)
    spilled = KAnonymity(**params, memory_tuples=700, spill_dir=str(tmp_path))
    for stage in (memory, spilled):
        for at in range(0, table.num_rows, 500):
            stage.observe(table.slice(at, 500))
        stage.decide()
    assert memory.report()["suppressed_rows"] > 0
    a, b = spilled.report()["measures"], memory.report()["measures"]
    assert a["ncp"] == pytest.approx(b["ncp"]) and (a["discernibility"], a["c_avg"]) == (b["discernibility"], b["c_avg"])
    assert list(tmp_path.iterdir()) == []
