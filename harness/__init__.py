"""atomiclab: run atomic tests, collect Windows telemetry, prove detections fire.

The import package is ``harness``; the distribution and console script are ``atomiclab``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("atomiclab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
