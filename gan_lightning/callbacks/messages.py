"""How the callbacks talk to the person running training: one line on stderr, from the global rank
zero only (Lightning's ``rank_zero_only``), so a DDP run says each thing once.

Plain lines rather than Python warnings: a warning prints the file and line that raised it and is
shown once per call site, while these lines (a metric skipped, metrics off, a checkpoint saved at
SIGTERM) tell a user about their run, like the scripts' one-line errors.
"""

from __future__ import annotations

import sys

from lightning.pytorch.utilities import rank_zero_only


@rank_zero_only
def rank_zero_warning(message: str) -> None:
    """``warning: <message>`` on stderr, from the global rank zero only."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


@rank_zero_only
def rank_zero_say(message: str) -> None:
    """``<message>`` on stderr, from the global rank zero only."""
    print(message, file=sys.stderr, flush=True)
