"""Splitting one input into disjoint site datasets, for a simulated federation.

* ``iid`` — rows shuffled and cut into ``sites`` parts of (almost) equal size: every site sees the
  same label mix, as the whole data has.
* ``label-skew`` — for every label, the shares of its rows that go to each site are drawn from a
  Dirichlet distribution with concentration ``alpha`` (Hsu et al. 2019; small ``alpha``: each site
  holds mostly a few labels, as real holders do; large: close to IID). Draws are repeated (up to
  ``MAX_DRAWS`` times) until every site has at least ``min_rows`` rows.

Seeded: the same labels, sites, partition and seed give the same split. Every row goes to exactly
one site. The result is one site index per row.

>>> assign_sites(10, sites=3, seed=0).tolist()
[2, 2, 0, 1, 0, 1, 0, 0, 2, 1]
>>> import numpy as np
>>> labels = np.repeat([0, 1, 2], 20)
>>> parts = assign_sites(60, sites=2, partition="label-skew", labels=labels, alpha=0.3, seed=0)
>>> [np.bincount(labels[parts == site], minlength=3).tolist() for site in (0, 1)]  # rows of each label per site
[[20, 19, 5], [0, 1, 15]]
"""

from __future__ import annotations

import numpy as np

from privprep.schemas.errors import DataError

PARTITIONS = ("iid", "label-skew")
MAX_DRAWS = 100


def assign_sites(
    rows: int,
    *,
    sites: int,
    partition: str = "iid",
    labels: np.ndarray | None = None,
    alpha: float = 0.5,
    seed: int | None = None,
    min_rows: int = 2,
) -> np.ndarray:
    """The site (0 … ``sites`` − 1) of each of ``rows`` rows."""
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {', '.join(PARTITIONS)}")
    if sites < 1 or rows < sites * min_rows:
        raise DataError(f"{rows} row(s) cannot be split into {sites} sites of at least {min_rows} rows each")
    rng = np.random.default_rng(seed)
    if partition == "iid":
        site = np.empty(rows, dtype=np.int64)
        for index, part in enumerate(np.array_split(rng.permutation(rows), sites)):
            site[part] = index
        return site
    if labels is None or len(labels) != rows:
        raise ValueError("label-skew needs one label per row")
    if not alpha > 0:
        raise ValueError("alpha must be > 0")
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    for _ in range(MAX_DRAWS):
        site = np.empty(rows, dtype=np.int64)
        for code in range(int(codes.max()) + 1):
            members = rng.permutation(np.flatnonzero(codes == code))
            shares = rng.dirichlet(np.full(sites, float(alpha)))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for index, part in enumerate(np.split(members, cuts)):
                site[part] = index
        if np.bincount(site, minlength=sites).min() >= min_rows:
            return site
    raise DataError(
        f"label-skew with alpha {alpha:g} left a site with fewer than {min_rows} rows in {MAX_DRAWS} draws; "
        "use fewer --sites or a larger --alpha"
    )


__all__ = ["MAX_DRAWS", "PARTITIONS", "assign_sites"]
