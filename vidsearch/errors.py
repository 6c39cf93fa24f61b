"""The one exception hierarchy of vidsearch.

Every error a user can cause derives from `VidsearchError`, so callers (the CLI, the gRPC servicer,
batch jobs) can tell a bad input from a bug and report it with the message it carries.
"""


class VidsearchError(Exception):
    """Base class of every error vidsearch raises on purpose."""


class ConfigError(VidsearchError, ValueError):
    """A configuration or preset is unknown or inconsistent."""


class CheckpointError(VidsearchError, ValueError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class VideoError(VidsearchError, ValueError):
    """A video cannot be probed or decoded."""
