"""`rsneo` commands: products."""

from rsneo.cli.app import app  # noqa: F401

