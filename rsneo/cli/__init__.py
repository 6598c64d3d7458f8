"""The `rsneo` command. Each module below adds its commands to the shared Typer `app`."""

from rsneo.cli import data, demo, evaluate, learn, model, products, train  # noqa: F401  (registers commands)
from rsneo.cli.app import app, main, run_app

__all__ = ["app", "main", "run_app"]
