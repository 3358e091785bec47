"""mtrl's version, as installed (`mtrl --version`, `mtrl.__version__`)."""

from importlib import metadata

try:
    __version__ = metadata.version("mtrl")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
