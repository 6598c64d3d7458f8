"""`rsneo` commands: data."""

from rsneo.cli.app import app  # noqa: F401

