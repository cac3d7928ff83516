"""The commit record of a run in an object store: ``_privprep_manifest.json`` at the run's prefix.

An object store has no atomic rename, so a run's objects are uploaded under ``<prefix>/run-<run id>/``
and the manifest, written last in one PUT (which a store makes visible whole or not at all), is what
makes them a run: it names the run id, the folder of its objects and every object with its size and
SHA-256. Readers of a run go through the manifest only and refuse a prefix without one.

>>> doc = manifest_document("20261203T150000Z-ab12", [{"path": "report.json", "size": 2, "sha256": "00"}])
>>> doc["format"], doc["root"], doc["complete"]
('privprep-manifest/1', 'run-20261203T150000Z-ab12', True)
>>> check_document(doc, "s3://b/out")["files"][0]["path"]
'report.json'
"""

from __future__ import annotations

import json
import time
from typing import Any

from privprep.schemas.errors import InputError

MANIFEST = "_privprep_manifest.json"
FORMAT = "privprep-manifest/1"
RUN_PREFIX = "run-"


def manifest_document(run_id: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of run ``run_id`` whose objects (paths relative to its root) are ``files``."""
    return {
        "format": FORMAT,
        "run_id": run_id,
        "root": RUN_PREFIX + run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "complete": True,
        "files": sorted(files, key=lambda f: f["path"]),
    }


def dumps(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def check_document(document: Any, where: str) -> dict[str, Any]:
    """``document`` if it is a complete manifest, else an :class:`InputError` naming ``where``."""
    files = document.get("files") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict) or document.get("format") != FORMAT or document.get("complete") is not True
        or not isinstance(document.get("root"), str) or not document["root"].startswith(RUN_PREFIX)
        or not isinstance(files, list)
        or not all(isinstance(f, dict) and {"path", "size", "sha256"} <= set(f) for f in files)
    ):
        raise InputError(f"'{where}/{MANIFEST}' is not a complete privprep manifest; the run cannot be read")
    return document


def parse(raw: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"'{where}/{MANIFEST}' is not valid JSON; the run cannot be read") from None
    return check_document(document, where)


__all__ = ["FORMAT", "MANIFEST", "RUN_PREFIX", "check_document", "dumps", "manifest_document", "parse"]
