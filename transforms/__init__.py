"""What happens to a batch: the stages themselves, importable on their own in ETL code.

>>> import pandas as pd
>>> from privprep.transforms import Drop, Pseudonymize
>>> df = pd.DataFrame({"email": ["a@x.org", "b@y.org"], "name": ["A", "B"]})
>>> out = Drop(columns=["name"]).apply(Pseudonymize(columns=["email"], domain="people", key=b"k" * 32).apply(df))
>>> out.columns.tolist(), df["email"][0]
(['email'], 'a@x.org')
"""

from . import registry
from .base import GlobalStage, MapStage, ReleaseStage, SinkStage, Stage, StageContext
from .drop import Drop
from .mask import Mask
from .pseudonymize import Pseudonymize, derive_domain_key

__all__ = [
    "Drop",
    "GlobalStage",
    "MapStage",
    "Mask",
    "Pseudonymize",
    "ReleaseStage",
    "SinkStage",
    "Stage",
    "StageContext",
    "derive_domain_key",
    "registry",
]
