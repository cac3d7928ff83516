"""The docs page "choosing k and ε" from a real sweep on the bundled sample:
``python -m privprep.pipeline.sweeps.sweep_docs`` runs ``privprep sweep`` on ``sample_data/pipeline.yaml``
(in a temporary folder, with a fresh keyring, a scratch output and seeded noise so the page can be
regenerated), writes the plot to ``docs/choosing-k-epsilon.svg`` and prints the tables in Markdown.

Options: ``--k 2,5,10,20 --epsilon 0.1,0.5,1,3 --seed 0 --svg PATH --json PATH``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data" / "pipeline.yaml"


def sample_config(folder: Path, seed: int | None) -> Path:
    """The sample config with absolute paths, a fresh keyring and a scratch output under ``folder``."""
    from ..keys.keyring import Keyring

    document = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    base = SAMPLE.parent
    document["input"] = str(base / document["input"])
    document["output"] = str(folder / "out")
    document["keyring"] = str(folder / "sample.keyring")
    document["budget"]["ledger"] = str(folder / "ledger.json")
    Keyring.create(folder / "sample.keyring")
    for entry in document["stages"]:
        (name, params), = entry.items()
        if name == "k_anonymity":
            for spec in params["hierarchies"].values():
                if "csv" in spec:
                    spec["csv"] = str(base / spec["csv"])
        if name in ("dp_stats", "train") and seed is not None:
            params["seed"] = seed
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def markdown(doc: dict[str, Any]) -> str:
    """The sweep's tables in Markdown."""
    raw = (doc.get("attack") or {}).get("raw_input") or {}
    lines = ["| k | achieved k | information loss | suppressed rows | classes | levels | correct re-identifications | expected rate |",
             "|---|---|---|---|---|---|---|---|"]
    if raw:
        lines.append(f"| raw input | | | 0 | | original values | {raw['reidentified_correctly']} ({raw['reidentification_rate']:.1%}) | "
                     f"{raw['expected_reidentification_rate']:.2%} |")
    for r in doc["k"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['k']} | unreachable | | | | | | |")
            continue
        a = r["attack"] or {}
        levels = ", ".join(f"{q} {v}" for q, v in r["levels"].items())
        lines.append(f"| {r['k']} | {r['achieved_k']} | {r['information_loss']:,.0f} | {r['suppressed_rows']} | "
                     f"{r['equivalence_classes']} | {levels} | {a.get('reidentified_correctly', '–')} "
                     f"({a.get('reidentification_rate', 0):.1%}) | {a.get('expected_reidentification_rate', 0):.2%} |")
    lines += ["", "| ε | largest relative error | mean relative error | training accuracy | ε spent by training |", "|---|---|---|---|---|"]
    for r in doc["epsilon"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['epsilon']:g} | {r['status']} | | | |")
            continue
        dp, train = r.get("dp_stats") or {}, r.get("train") or {}
        accuracy = f"{train['accuracy']:.1%}" if train.get("accuracy") is not None else "–"
        spent = f"{train['epsilon']:.3f}" if train.get("epsilon") is not None else "–"
        lines.append(f"| {r['epsilon']:g} | {dp.get('max_relative_error', 0):.3g} | {dp.get('mean_relative_error', 0):.3g} | "
                     f"{accuracy} | {spent} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m privprep.pipeline.sweeps.sweep_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="2,5,10,20")
    parser.add_argument("--epsilon", default="0.1,0.5,1,3")
    parser.add_argument("--seed", type=int, default=0, help="seed of the DP noise and training (reproducible docs); -1: none")
    parser.add_argument("--svg", type=Path, default=REPO / "docs" / "choosing-k-epsilon.svg")
    parser.add_argument("--json", type=Path, default=None, help="also keep sweep.json here")
    args = parser.parse_args(argv)
    from ..reports.plots_sweep import overview
    from ..engines.progress import configure_logging
    from .sweep import parse_values, run_sweep

    configure_logging(quiet=True)
    with tempfile.TemporaryDirectory(prefix="privprep-sweep-docs-") as folder:
        config = sample_config(Path(folder), None if args.seed < 0 else args.seed)
        result = run_sweep(config, k=parse_values(args.k, "--k", int), epsilon=parse_values(args.epsilon, "--epsilon", float),
                           out=Path(folder) / "sweep")
        doc = result.document
    svg = overview(doc)
    if svg is None:
        raise SystemExit("the sweep has no k or no epsilon settings to plot")
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    args.svg.write_text('<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + svg, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.svg} (sweep of {doc['input']['rows']:,} rows in {doc['seconds']:.0f} s)\n")
    print(markdown(doc))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
