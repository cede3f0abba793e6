"""Training commands, mounted lazily by `server/cli.py` (`signstream data ...`, `signstream train`, ...)."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(no_args_is_help=True, help="Build, lift and preview training corpora.")
