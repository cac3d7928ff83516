"""``python -m privprep.pipeline`` runs the CLI."""

from .cli import main

main()
