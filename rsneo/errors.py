"""User-facing errors.

Anything a user can fix (a bad file, a wrong band list, an unwritable folder) raises `RSNeoError` with a
message that names the file or band, says what was expected and what was found. The CLI prints it without a
traceback and exits 2.
"""

from __future__ import annotations


class RSNeoError(Exception):
    """An error caused by the user's input; its message is shown as is."""


class InputError(RSNeoError):
    """A raster, shard, checkpoint or option that cannot be used as given."""


class RSNeoWarning(UserWarning):
    """Base of rsneo's own warnings (the test suite turns the unexpected ones into errors)."""


class OutsideTrainingWarning(RSNeoWarning):
    """Input imagery of a sensor or pixel size the head making the map was never trained on: its map is
    unverified there (`rsneo.heads.domain`)."""
