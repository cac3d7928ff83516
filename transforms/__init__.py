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
from .dp import DpStats
from .drop import Drop
from .encrypt import Encrypt, decrypt_column
from .generalize import Generalize
from .k_anonymity import KAnonymity
from .mask import Mask
from .microaggregate import Microaggregate
from .mondrian import MondrianKAnonymity
from .pseudonymize import Pseudonymize, derive_domain_key
from .tokenize import Tokenize, detokenize_column
from .train import Train  # registers 'train'; torch is imported only when training starts

__all__ = [
    "DpStats",
    "Drop",
    "Encrypt",
    "Generalize",
    "GlobalStage",
    "KAnonymity",
    "MapStage",
    "Mask",
    "Microaggregate",
    "MondrianKAnonymity",
    "Pseudonymize",
    "ReleaseStage",
    "SinkStage",
    "Stage",
    "StageContext",
    "Tokenize",
    "Train",
    "decrypt_column",
    "derive_domain_key",
    "detokenize_column",
    "registry",
]
