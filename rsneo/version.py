"""rsneo's version, in a module of its own: every layer may import it, and the package root (which re-exports
the API) then sits at the top without an import cycle."""

__version__ = "0.1.0"
