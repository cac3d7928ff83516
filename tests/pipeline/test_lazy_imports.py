"""A command imports only what it uses: ``--help``, ``keys`` and a pseudonymize + drop run load none of
the heavy optional libraries (checked in a fresh interpreter, by ``sys.modules``; no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "opacus", "dask", "distributed", "flwr", "ray", "matplotlib", "sklearn", "diffprivlib", "scipy", "faker")
DATA_LIBRARIES = ("pandas", "pyarrow", "numpy", "pydantic", "yaml", "cryptography")

PROBE = """
import json, sys
from privprep.pipeline.cli import main
code = main(json.loads(sys.argv[1]))
roots = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "modules": roots}))
"""


def loaded(*args: str) -> tuple[int, set[str]]:
    """Exit code and top-level modules loaded after ``privprep ARGS`` in a new interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["code"], set(answer["modules"])


def test_help_loads_no_data_or_heavy_library() -> None:
    code, modules = loaded("--help")
    assert code == 0
    assert not modules & set(HEAVY + DATA_LIBRARIES), sorted(modules & set(HEAVY + DATA_LIBRARIES))


def test_keys_loads_no_heavy_library(tmp_path: Path) -> None:
    code, modules = loaded("keys", "new", "--out", str(tmp_path / "k.keyring"))
    assert code == 0
    assert not modules & set(HEAVY + ("pandas", "pyarrow")), sorted(modules & set(HEAVY))
    code, modules = loaded("keys", "list", str(tmp_path / "k.keyring"))
    assert code == 0 and not modules & set(HEAVY + ("pandas", "pyarrow"))


def test_pseudonymize_drop_run_loads_no_heavy_library(workspace) -> None:  # type: ignore[no-untyped-def]
    config = workspace.config()  # the shared fixture's stages: pseudonymize [patient_id] + drop [name]
    code, modules = loaded("run", str(config), "--quiet")
    assert code == 0
    assert (workspace.out / "report.html").is_file() and (workspace.out / "data").is_dir()
    assert not modules & set(HEAVY + ("pandas",)), sorted(modules & set(HEAVY + ("pandas",)))
