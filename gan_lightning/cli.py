"""Entry-point helper: user errors end in one line on stderr (exit 2), divergence too (exit 3)."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from gan_lightning.errors import DivergenceError, UsageError


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)``; a UsageError becomes ``error: <message>`` and 2, a DivergenceError 3."""
    try:
        return int(main(argv) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DivergenceError as e:
        print(f"diverged: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
