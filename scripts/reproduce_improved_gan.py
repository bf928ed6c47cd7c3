#!/usr/bin/env python
"""Reproduce Salimans et al. 2016 at small scale: semi-supervised error, mode coverage, ablation.

Writes <out_dir>/summary.json, results.md, fig_semi_supervised.png, fig_mode_coverage.png,
fig_ablation.png, and one ordinary run folder per training run under <out_dir>/runs (started
again, it reuses the runs that finished). --quick finishes in under 15 minutes on two CPU cores.

Example:
    python scripts/reproduce_improved_gan.py --quick --out_dir runs/improved_gan_quick
    python scripts/reproduce_improved_gan.py --only semi_supervised --accelerator gpu
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from gan_lightning.runs.cli import Parser, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from gan_lightning.experiments.reproduce import STUDIES
    from gan_lightning.experiments.reproduce_report import reproduce

    p = Parser(prog="reproduce_improved_gan.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="short settings (under 15 minutes on two CPU cores)")
    p.add_argument("--out_dir", default="", help="output folder (default: runs/improved_gan[_quick])")
    p.add_argument("--only", default=",".join(STUDIES),
                   help=f"comma-separated studies to run (default: all of {', '.join(STUDIES)})")
    p.add_argument("--accelerator", default="cpu", help="passed to every training run (cpu, gpu, auto)")
    p.add_argument("--jobs", type=int, default=0,
                   help="training runs at once, each a process with one thread (default: one per CPU core, at "
                        "most 2, with --accelerator cpu; 1 otherwise)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the summary and figures of an earlier reproduction in --out_dir (its finished "
                        "runs are reused either way)")
    return reproduce(**vars(p.parse_args(argv)))


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    sys.exit(run_cli(main))
