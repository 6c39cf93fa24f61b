"""vidsearch: serve video foundation models and find moments in video collections by text."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vidsearch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
