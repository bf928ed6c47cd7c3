"""Entry-point helpers: user errors end in one line on stderr (exit 2), divergence too (exit 3); the
scripts' one parser and the list and number types of their flags."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Callable, Sequence

from gan_lightning.errors import DivergenceError, UsageError

DEBUG_ENV = "GAN_LIGHTNING_DEBUG"  # set to 1 to see the traceback behind a one-line error


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` and turn the errors a user can cause into one line on stderr.

    A UsageError gives ``error: <message>`` and exit 2; an OSError that no check caught before
    (a disk that filled up, a folder removed mid-run) ``error: <what> (<path>)`` and 2; a
    DivergenceError 3; Ctrl-C 130, with the message the interrupted code attached (how to resume).
    With ``GAN_LIGHTNING_DEBUG=1`` OSErrors keep their traceback.
    """
    try:
        return int(main(argv) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DivergenceError as e:
        print(f"diverged: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:
        print(f"interrupted{f'; {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    except OSError as e:
        if os.environ.get(DEBUG_ENV):
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {e.strerror or type(e).__name__}{where}; set {DEBUG_ENV}=1 for the traceback",
              file=sys.stderr)
        return 2


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default, except where there is none to show (None, "") or the help
    text already says it (``(default: the last)``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, "", argparse.SUPPRESS) or "(default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageErrors: one line and exit 2 through :func:`run_cli`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# -- flag types: text -> value, or ArgumentTypeError (the parser says ``error: argument --flag: <message>``)
def scalar(kind: type, minimum: float, maximum: float, malformed: str = "") -> Callable[[str], Any]:
    """One ``kind`` (int or float) in [minimum, maximum]; ``malformed`` is what the message expects of
    text that is no ``kind`` at all (default: the range)."""
    expected = f"an integer in [{minimum:,}, {maximum:,}]" if kind is int else f"a number in [{minimum:g}, {maximum:g}]"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {malformed or expected}, got {text!r}") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def count(maximum: int, malformed: str = "") -> Callable[[str], int]:
    """An integer in [1, maximum] (see :func:`scalar`)."""
    return scalar(int, 1, maximum, malformed)


def numbers(kind: type, minimum: float, maximum: float) -> Callable[[str], list]:
    """A comma-separated list of ``kind`` in [minimum, maximum], at least one, as a sorted list without repeats."""
    def parse(text: str) -> list:
        try:
            values = [kind(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}s, got {text!r}") from None
        if not values or not all(math.isfinite(v) and minimum <= v <= maximum for v in values):
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s in [{minimum:g}, {maximum:g}], got {text!r}")
        return sorted(set(values))
    return parse


def seeds(text: str) -> tuple[int, ...]:
    """A comma-separated list of seeds in [0, 2^32), at least one, in the order given, no repeats."""
    try:
        chosen = tuple(dict.fromkeys(int(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of seeds, got {text!r}") from None
    if not chosen or not all(0 <= s < 2**32 for s in chosen):
        raise argparse.ArgumentTypeError(f"expected seeds in [0, 2^32), got {text!r}")
    return chosen


def names(valid: Sequence[str], required: bool = False) -> Callable[[str], list[str]]:
    """A comma-separated list of names of ``valid``, in the order given, no repeats. ``required``: at
    least one, and the message of a bad list lists the valid names first."""
    def parse(text: str) -> list[str]:
        chosen = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
        unknown = [n for n in chosen if n not in valid]
        if required and (unknown or not chosen):
            raise argparse.ArgumentTypeError(f"expected names of {', '.join(valid)}, got {text!r}")
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown name {unknown[0]!r}; valid names are: {', '.join(valid)}")
        return chosen
    return parse
