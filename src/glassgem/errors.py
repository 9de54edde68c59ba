"""User-facing errors. Each message names the file (or option) and the problem.

The CLI prints these as one line and exits non-zero; anything else escaping is a bug.
"""


class GlassgemError(Exception):
    """Base class for errors caused by user input, not by glassgem itself."""


class DataError(GlassgemError):
    """Unreadable/corrupt image or mask, size mismatch, empty folder, bad layout."""


class CheckpointError(GlassgemError):
    """A weights file that is missing, corrupt, or not a checkpoint of the expected model."""


class ConfigError(GlassgemError):
    """An unknown preset, option or an inconsistent setting."""
