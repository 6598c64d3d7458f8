"""`rsneo` commands: model."""

from rsneo.cli.app import app  # noqa: F401

