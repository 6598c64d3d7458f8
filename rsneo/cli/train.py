"""`rsneo` commands: train."""

from rsneo.cli.app import app  # noqa: F401

