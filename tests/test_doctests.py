"""The runnable examples in the docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["privprep.schemas", "privprep.transforms", "privprep.pipeline"]


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__) if m.name != "__main__"]
    return names


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
