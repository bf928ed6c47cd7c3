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

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from gan_lightning.runs.cli import run_cli
from gan_lightning.errors import UsageError
from gan_lightning.runs.outputs import check_out_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def parse(argv: Sequence[str] | None):
    from gan_lightning.config import ACCELERATORS
    from gan_lightning.experiments.reproduce import STUDIES

    p = _Parser(prog="reproduce_improved_gan.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
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
    args = p.parse_args(argv)
    args.out_dir = args.out_dir or ("runs/improved_gan_quick" if args.quick else "runs/improved_gan")
    check_out_dir(args.out_dir, results=("summary.json", "results.md"), overwrite=args.overwrite)
    if args.accelerator not in ACCELERATORS:
        raise UsageError(f"--accelerator: unknown value {args.accelerator!r}; valid values are: "
                         f"{', '.join(ACCELERATORS)}")
    if not 0 <= args.jobs <= 64:
        raise UsageError(f"--jobs: must be in [1, 64] (0: the default), got {args.jobs}")
    if args.jobs == 0:
        args.jobs = min(2, os.cpu_count() or 1) if args.accelerator == "cpu" else 1
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in STUDIES]
    if unknown or not only:
        raise UsageError(f"--only: unknown study {unknown[0] if unknown else '(none)'}; "
                         f"choose from {', '.join(STUDIES)}")
    return args, only


def main(argv: Sequence[str] | None = None) -> int:
    from gan_lightning.experiments.reproduce import FULL, QUICK, STUDIES
    from gan_lightning.experiments.reproduce_report import write_outputs

    args, only = parse(argv)
    settings = dataclasses.replace(QUICK if args.quick else FULL, jobs=args.jobs,
                                   extra=("--accelerator", args.accelerator, "--logger", "csv"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    start = time.time()
    summary = {}
    for name in only:
        summary[name] = STUDIES[name](settings, out_dir / "runs", say)
    written = write_outputs(summary, dataclasses.asdict(settings), out_dir, time.time() - start)
    print((out_dir / "results.md").read_text())
    say(f"wrote {', '.join(str(p) for p in written)} in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    sys.exit(run_cli(main))
