"""The runnable examples in the docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["privprep.schemas", "privprep.transforms", "privprep.pipeline"]


def modules() -> list[str]:
    """Every module of the three packages, subpackages included (``transforms.anonymity``, ``pipeline.federated``, ...)."""
    names = []
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, prefix=f"{package}.", onerror=lambda _: None)
                  if not m.name.endswith(".__main__")]
    return names


def test_subpackages_are_collected() -> None:
    found = set(modules())
    assert {"privprep.transforms.anonymity.loss", "privprep.transforms.anonymity.store",
            "privprep.transforms.dp.queries", "privprep.pipeline.federated.simulate"} <= found


OPTIONAL = {"torch", "opacus", "flwr", "dask", "distributed", "matplotlib", "moto"}  # the extras


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional package {exc.name}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
