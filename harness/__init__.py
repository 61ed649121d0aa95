"""atomiclab: run atomic tests, collect Windows telemetry, prove detections fire.

The import package is ``harness``; the distribution and console script are ``atomiclab``.
``harness.__version__`` is read from the installed distribution when first asked for (reading
package metadata costs more than the rest of ``atomiclab --help``).
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("atomiclab")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0+source"
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = ["__version__"]
