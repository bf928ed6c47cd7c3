"""Entry-point helper: user errors end in one line on stderr (exit 2), divergence too (exit 3)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

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
