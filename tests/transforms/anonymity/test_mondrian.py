"""Mondrian on distinct tuples: hand-worked partitions, and a brute-force check on random small inputs
that every final partition has at least k rows, meets l / t, and admits no allowable cut (computed
here independently with pandas from the documented median and hierarchy cuts)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from privprep.transforms.anonymity.criteria import Criteria, LDiversityCriterion
from privprep.transforms.anonymity.mondrian import Unreachable, partition
from privprep.transforms.anonymity.tuples import TupleCounter
from privprep.transforms.hierarchies import build_hierarchy

SEX = {"M": ["*"], "F": ["*"]}


def run(frame: pd.DataFrame, qis: list[str], maps: dict[str, dict], criteria: Criteria) -> pd.DataFrame:
    """Each row of ``frame`` with its partition's recoding (columns ``<qi>_out``)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    counter = TupleCounter(list(frame.columns))
    counter.observe(table)
    tuples = counter.result()
    hierarchies = {q: build_hierarchy({"map": m}, q, tuples.dictionaries[tuples.index(q)]) for q, m in maps.items()}
    result = partition(tuples, qis, hierarchies, criteria)
    decoded = pd.DataFrame({c: tuples.decoded(c) for c in frame.columns})
    for q in qis:
        decoded[f"{q}_out"] = [result.recodings[q][p] for p in result.part]
    return frame.merge(decoded, on=list(frame.columns), how="left", validate="many_to_one")


def classes(out: pd.DataFrame, qis: list[str]) -> set[tuple]:
    return {tuple(sorted(map(tuple, g[qis].values.tolist()))) for _, g in out.groupby([f"{q}_out" for q in qis])}


def test_hand_worked_partitions() -> None:
    # k=2, QIs age (numeric) then sex (M, F -> *). Root: both widths 1 (age 13/13, sex (2-1)/(2-1)), age
    # first by QI order; median: cumulative 1..8 reaches 4 at 23 -> {20,21,22,23} | {30,...,33}.
    # Left: sex (width 1) beats age (3/13): M {20,21}, F {22,23}, both 2 -> cut. {20M,21M}: sex is one
    # value (LCA level 0); the age cut 20 | 21 leaves 1 row a side -> final [20, 21], M. Likewise the rest.
    frame = pd.DataFrame({"age": [20, 21, 22, 23, 30, 31, 32, 33], "sex": list("MMFFFMFM")})
    out = run(frame, ["age", "sex"], {"sex": SEX}, Criteria(k=2))
    assert sorted(set(zip(out.age_out, out.sex_out))) == [("[20, 21]", "M"), ("[22, 23]", "F"), ("[30, 32]", "F"), ("[31, 33]", "M")]
    assert out[out.age == 31].age_out.item() == "[31, 33]"


def test_l_diversity_blocks_cuts() -> None:
    # diagnosis a,a,b,c on the left: the sex cut gives M {a,a} (1 distinct < 2) and the age median cut
    # (cumulative 2 of 4 at 21) gives {a,a} too, so the left half stays whole: [20, 23], *.
    # The right half's sex cut gives F {a,b} and M {b,a}: allowed.
    frame = pd.DataFrame({"age": [20, 21, 22, 23, 30, 31, 32, 33], "sex": list("MMFFFMFM"), "dx": list("aabcabba")})
    out = run(frame, ["age", "sex"], {"sex": SEX}, Criteria(k=2, l_diversity=(LDiversityCriterion("dx", 2),)))
    assert sorted(set(zip(out.age_out, out.sex_out))) == [("[20, 23]", "*"), ("[30, 32]", "F"), ("[31, 33]", "M")]


def test_weighted_median_and_last_value() -> None:
    # counts 4,1,1 of 1,2,3: cumulative 4 >= 3 at value 1 -> {1 x4} | {2, 3}; then 2 | 3 leaves 1 row: final.
    out = run(pd.DataFrame({"x": [1, 1, 1, 1, 2, 3]}), ["x"], {}, Criteria(k=2))
    assert sorted(set(out.x_out)) == ["[1, 1]", "[2, 3]"]
    # 1, then 2 x5: the median is the last value, so the cut falls before it: {1} | {2 x5}
    out = run(pd.DataFrame({"x": [1, 2, 2, 2, 2, 2]}), ["x"], {}, Criteria(k=1))
    assert sorted(set(out.x_out)) == ["[1, 1]", "[2, 2]"]


def test_missing_numbers_and_unreachable() -> None:
    # missing sorts last: counts 1, 1, 1 of 1, 2, 5 and 3 missing reach 3 of 6 at 5 -> {1, 2, 5} | {missing x3}
    out = run(pd.DataFrame({"x": [1.0, 2.0, None, None, None, 5.0]}), ["x"], {}, Criteria(k=3))
    assert sorted(set(out.x_out.fillna("null"))) == ["[1, 5]", "null"]
    out = run(pd.DataFrame({"x": [1.0, 2.0, None, None, 5.0]}), ["x"], {}, Criteria(k=3))
    assert sorted(set(out.x_out.fillna("null"))) == ["*"]  # 5 rows cannot make two of 3: numbers and missing mixed
    with pytest.raises(Unreachable):
        run(pd.DataFrame({"x": [1, 2]}), ["x"], {}, Criteria(k=3))


# -- brute force ----------------------------------------------------------------------------------

ZIP = {f"{a}{b}{c}": [f"{a}{b}*", f"{a}**"] for a, b, c in itertools.product("12", "12", "123")}


def _lca(values: pd.Series, mapping: dict[str, list[str]]) -> int:
    chain = lambda v: [v, *mapping[v], "*"]  # noqa: E731
    for level in range(len(chain(values.iloc[0]))):
        if values.map(lambda v: chain(v)[level]).nunique() == 1:
            return level
    raise AssertionError


def _ok(parts: list[pd.DataFrame], k: int, l: int | None) -> bool:  # noqa: E741
    return all(len(p) >= k and (l is None or p.dx.nunique() >= l) for p in parts)


def _median_halves(part: pd.DataFrame, column: str) -> list[pd.DataFrame] | None:
    values = part[column].sort_values().tolist()
    distinct = sorted(set(values))
    if len(distinct) < 2:
        return None
    half = len(values) / 2
    cut = next(v for v in distinct if sum(x <= v for x in values) >= half)
    if cut == distinct[-1]:
        cut = distinct[-2]
    return [part[part[column] <= cut], part[part[column] > cut]]


def _children(part: pd.DataFrame, column: str, mapping: dict[str, list[str]]) -> list[pd.DataFrame] | None:
    level = _lca(part[column], mapping)
    if level == 0:
        return None
    chain = lambda v: [v, *mapping[v], "*"]  # noqa: E731
    key = part[column].map(lambda v: chain(v)[level - 1])
    return [g for _, g in part.groupby(key)]


@pytest.mark.parametrize("seed", range(12))
def test_brute_force_strict_and_no_allowable_cut_left(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 80))
    k = int(rng.choice([2, 3, 5]))
    l = int(rng.choice([0, 2]))  # noqa: E741
    frame = pd.DataFrame({
        "age": rng.integers(0, 12, n),
        "zip": rng.choice(sorted(ZIP), n),
        "sex": rng.choice(["M", "F"], n),
        "dx": rng.choice(list("abc"), n),
    })
    criteria = Criteria(k=k, l_diversity=(LDiversityCriterion("dx", l),) if l else ())
    maps = {"zip": ZIP, "sex": SEX}
    out = run(frame, ["age", "zip", "sex"], maps, criteria)
    groups = out.groupby(["age_out", "zip_out", "sex_out"])
    assert groups.size().min() >= k
    if l:
        assert groups.dx.nunique().min() >= l
    for (age_out, zip_out, sex_out), part in groups:
        assert age_out == f"[{part.age.min()}, {part.age.max()}]"
        for column, value in (("zip", zip_out), ("sex", sex_out)):
            chain = lambda v: [v, *maps[column][v], "*"]  # noqa: E731
            assert value == chain(part[column].iloc[0])[_lca(part[column], maps[column])]
        # no allowable cut is left on any dimension
        for halves in (_median_halves(part, "age"), _children(part, "zip", ZIP), _children(part, "sex", SEX)):
            assert halves is None or not _ok(halves, k, l or None)
    # strict: every distinct input tuple lies in exactly one class
    assert (out.groupby(["age", "zip", "sex"])[["age_out", "zip_out", "sex_out"]].nunique() == 1).all().all()
