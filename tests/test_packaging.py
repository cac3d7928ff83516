"""SPEC §1: the three folders install as privprep.pipeline, privprep.transforms, privprep.schemas."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_package_dir_mapping_and_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["package-dir"] == {
        "privprep.pipeline": "pipeline",
        "privprep.transforms": "transforms",
        "privprep.schemas": "schemas",
    }
    assert project["project"]["scripts"]["privprep"] == "privprep.pipeline.cli:main"
    assert {"train", "dask", "dev"} <= set(project["project"]["optional-dependencies"])
    deps = " ".join(project["project"]["dependencies"])
    assert "scikit-learn>=1.4,<1.9" in deps and "==" not in deps


def test_every_subpackage_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    for top in ("pipeline", "transforms", "schemas"):
        for init in (ROOT / top).rglob("__init__.py"):
            dotted = "privprep." + ".".join(init.parent.relative_to(ROOT).parts)
            assert dotted in listed, f"add {dotted} to [tool.setuptools] packages in pyproject.toml"


def test_packages_import() -> None:
    for name in ("privprep.pipeline", "privprep.transforms", "privprep.schemas"):
        module = importlib.import_module(name)
        assert list(pkgutil.iter_modules(module.__path__))


def test_core_import_does_not_need_torch_or_dask() -> None:
    import subprocess
    import sys

    code = "import sys, privprep.pipeline, privprep.transforms; print('torch' in sys.modules, 'dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
