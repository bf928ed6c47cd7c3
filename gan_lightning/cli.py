"""Entry-point helper: user errors end in one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from gan_lightning.errors import UsageError


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)``; turn a UsageError into ``error: <message>`` on stderr and return 2."""
    try:
        return int(main(argv) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
