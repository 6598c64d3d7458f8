"""rsneo: native vision-language models (NEO) for Earth observation."""

__version__ = "0.1.0"
