"""``federate simulate`` splits its input batch by batch: each site's file holds exactly the rows
:func:`assign_sites` gives it, in input order, as if the whole input had been split in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from privprep.pipeline.federated.simulate import _split
from privprep.pipeline.federated.split import assign_sites
from privprep.pipeline.files.io import InputSource
from privprep.schemas.errors import DataError


def _input(folder: Path) -> pa.Table:
    """Three files with small row groups (37 rows in all), so batches cut across files and groups."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    table = pa.table({"id": pa.array(np.arange(37), pa.int64()), "label": pa.array(rng.integers(0, 3, 37), pa.int64()),
                      "text": [f"row-{i}" for i in range(37)]})
    for index, (start, stop) in enumerate(((0, 10), (10, 25), (25, 37))):
        pq.write_table(table.slice(start, stop - start), folder / f"part-{index}.parquet", row_group_size=4)
    return table


@pytest.mark.parametrize("partition", ["iid", "label-skew"])
def test_each_site_gets_the_rows_assign_sites_gives_it_in_input_order(tmp_path: Path, partition: str) -> None:
    table = _input(tmp_path / "in")
    source = InputSource.open(str(tmp_path / "in"))
    work = tmp_path / "work"
    work.mkdir()
    rows, paths = _split(source, work, sites=3, partition=partition, label="label", alpha=0.8, seed=5, batch_rows=6)
    labels = table.column("label").to_numpy()
    site_of = assign_sites(37, sites=3, partition=partition, labels=labels, alpha=0.8, seed=5)
    assert rows == 37 and [p.relative_to(work).as_posix() for p in paths] == [f"site-{i}/input.parquet" for i in range(3)]
    for index, path in enumerate(paths):
        assert pq.read_table(path).to_pydict() == table.take(pa.array(np.flatnonzero(site_of == index))).to_pydict()


def test_a_csv_input_is_counted_first_and_a_missing_label_stops_the_split(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pacsv.write_csv(pa.table({"id": list(range(9)), "label": [0, 1, 2] * 3}), tmp_path / "in" / "a.csv")
    work = tmp_path / "work"
    work.mkdir()
    rows, paths = _split(InputSource.open(str(tmp_path / "in")), work, sites=2, partition="iid", label="label", alpha=1.0,
                         seed=0, batch_rows=4)
    assert rows == 9 and sum(pq.read_metadata(p).num_rows for p in paths) == 9
    pacsv.write_csv(pa.table({"id": [1, 2, 3, 4], "label": [0, None, 1, 1]}), tmp_path / "in" / "a.csv")
    with pytest.raises(DataError, match="label column 'label', which has 1 missing label"):
        _split(InputSource.open(str(tmp_path / "in")), tmp_path / "w2", sites=2, partition="label-skew", label="label",
               alpha=1.0, seed=0, batch_rows=4)
