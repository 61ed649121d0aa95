"""argparse ``type=`` converters for numbers with a range: a bad value is a one-line usage error.

``argparse`` reports an ``ArgumentTypeError`` as ``PROG: error: argument --OPT: MESSAGE`` (exit 2).
Floats must be finite: ``float()`` accepts ``nan`` and ``inf``, which no timeout or count means.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.plan import ArgOverride


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    """A whole number >= ``low``."""

    def convert(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {low}")
        return value

    convert.__name__ = f"int>={low}"
    return convert


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


non_negative_int = int_at_least(0)
positive_int = int_at_least(1)


def input_override(text: str) -> ArgOverride:
    """``NAME=VALUE`` or ``GUID:NAME=VALUE`` (``run --arg``); the value is checked later, per test."""
    from harness.plan import parse_arg_override
    try:
        return parse_arg_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
