"""Value checkers of the command line, shared by the sub-commands (``type=`` of ``add_argument``).

Each parses one argument's text and raises :class:`argparse.ArgumentTypeError` with a message naming what
was expected, which the parser prints as its one-line usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable, TypeVar

T = TypeVar("T", int, float)


def checked_number(text: str, kind: type[T], valid: Callable[[T], bool], requirement: str) -> T:
    """Parse ``text`` as ``kind`` (``int`` or ``float``) and check ``valid(value)``; argparse errors name the
    ``requirement`` (e.g. ``"positive"`` → ``must be positive, got '0'``)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    return checked_number(text, int, lambda v: v > 0, "positive")


def non_negative_int(text: str) -> int:
    """An integer ≥ 0."""
    return checked_number(text, int, lambda v: v >= 0, "non-negative")


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0."""
    return checked_number(text, float, lambda v: math.isfinite(v) and v >= 0, "a non-negative number")


def parse_fov(text: str) -> float:
    """Horizontal FOV from the command line → radians.

    A plain number is radians (as the official ``--fov``); a ``deg`` / ``°`` suffix means degrees and
    ``rad`` radians, e.g. ``0.2``, ``0.2rad``, ``40deg``.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(deg|°|rad)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a field of view: {text!r} (e.g. 0.2, 0.2rad or 40deg)")
    value = float(match.group(1))
    if match.group(2) in ("deg", "°"):
        value = math.radians(value)
    if not 0.0 < value < math.pi:
        raise argparse.ArgumentTypeError(f"field of view must be between 0 and 180 degrees, got {text!r}")
    return value


def azimuths(text: str) -> list[float]:
    """Comma-separated finite azimuths in degrees (at least one), e.g. ``0,90,180,270``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"azimuths must be comma-separated degrees, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"azimuths must be comma-separated degrees, got {text!r}")
    return values


def shard(text: str) -> tuple[int, int]:
    """``I/N`` with ``1 ≤ I ≤ N`` (one-based) → ``(I, N)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise argparse.ArgumentTypeError(f"shard must be I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))
