"""Measures against textbook values: Li et al.'s t-closeness example, Machanavajjhala et al.'s definitions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from privprep.transforms.anonymity import measures
from privprep.transforms.anonymity.criteria import sensitive_codes
from privprep.transforms.anonymity.tuples import TupleCounter
from tests.conftest import TEST_DATA

LI = TEST_DATA / "arx-toy" / "test2.csv"


def li_table() -> pa.Table:
    return pacsv.read_csv(LI, parse_options=pacsv.ParseOptions(delimiter=";"))


def emd_for_partition(partition: list[list[int]], column: str) -> list[float]:
    """EMD of each group of salaries (in thousands) in Li et al.'s 9-row table."""
    table = li_table()
    group = {s: g for g, salaries in enumerate(partition) for s in salaries}
    table = table.append_column("group", pa.array([group[s] for s in table.column("Salary").to_pylist()]))
    counter = TupleCounter(["group", column])
    counter.observe(table)
    tuples = counter.result()
    classes = np.asarray(tuples.dictionaries[0].take(pa.array(tuples.codes[:, 0])).to_pylist())
    codes, ordered = sensitive_codes(tuples, column)
    return measures.t_closeness(classes, tuples.counts, codes, len(partition), ordered=ordered).tolist()


def test_li_et_al_ordered_emd_salary() -> None:
    # Table 4 of Li, Li, Venkatasubramanian (ICDE 2007): D[{3k,4k,5k}, Q] = 0.375 (ordered distance)
    assert emd_for_partition([[3, 4, 5], [6, 8, 11], [7, 9, 10]], "Salary")[0] == pytest.approx(0.375)
    # Table 5, the 0.167-closeness release: the classes are 1/6, 1/6 and 1/12 from the whole table
    emd = emd_for_partition([[3, 5, 9], [6, 8, 11], [4, 7, 10]], "Salary")
    assert emd == pytest.approx([1 / 6, 1 / 6, 1 / 12]) and max(emd) == pytest.approx(0.167, abs=5e-4)


def test_equal_distance_emd_disease() -> None:
    # equal ground distance: ½ Σ|p − q| = ½ (2/9 + 1/9 + 1/9 + 1/9 + 2/9 + 1/9) = 4/9 for {gastric ulcer, gastritis, stomach cancer}
    assert emd_for_partition([[3, 4, 5], [6, 8, 11], [7, 9, 10]], "Disease")[0] == pytest.approx(4 / 9)


def test_l_diversity_textbook_definitions() -> None:
    # class 0: a,a,b,b (2 distinct, entropy log 2); class 1: a,a,a,b,c (counts 3,1,1); class 2: a only
    classes = np.array([0, 0, 1, 1, 1, 2])
    sensitive = np.array([0, 1, 0, 1, 2, 0])
    counts = np.array([2, 2, 3, 1, 1, 4])
    assert measures.distinct_l(classes, counts, sensitive, 3).tolist() == [2, 3, 1]
    entropy = -(0.6 * np.log(0.6) + 2 * 0.2 * np.log(0.2))
    assert measures.entropy_l(classes, counts, sensitive, 3) == pytest.approx([2.0, np.exp(entropy), 1.0])
    # recursive (c,l): r1 < c (r_l + ... + r_m); class 1 has r = (3, 1, 1)
    assert measures.recursive_cl(classes, counts, sensitive, 3, c=2, l=2).tolist() == [True, True, False]  # 3 < 2·2
    assert measures.recursive_cl(classes, counts, sensitive, 3, c=1, l=2).tolist() == [False, False, False]  # 2 < 1·2 fails
    assert measures.recursive_cl(classes, counts, sensitive, 3, c=4, l=3).tolist() == [False, True, False]  # 3 < 4·1


def test_risk_definitions() -> None:
    sizes = np.array([1, 1, 2, 6])
    assert measures.risk(sizes) == {"prosecutor_max": 1.0, "prosecutor_avg": 0.4, "sample_uniques": 0.2}
    assert measures.risk(np.array([], dtype=np.int64))["prosecutor_max"] == 0.0
