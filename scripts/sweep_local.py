#!/usr/bin/env python
"""Run a W&B sweep on this machine, without a W&B server: one train.py process per run, W&B offline.

    python scripts/sweep_local.py sweeps/smoke.yaml --count 4
    python scripts/sweep_local.py sweeps/noise_bayes.yaml --count 20 --out_dir runs/sweeps
    python scripts/sweep_local.py sweeps/losses_x_noise.yaml --count 3 --dry_run   # commands only

Runs come from the ``sweeps`` package (W&B's grid, random and Bayesian search engine); Bayesian
search is fed the finished runs' metric values, and a sweep with ``early_terminate`` (hyperband)
stops runs with SIGTERM as W&B would. A failed run is reported and the sweep goes on; the end
prints a table of the sweep's metric per run. Exit status: 0, 1 if a run failed, 2 for bad input.
"""

import sys

from gan_lightning.runs.cli import Parser, run_cli
from gan_lightning.errors import UsageError
from gan_lightning.trainer.outputs import check_out_dir


def main(argv=None) -> int:
    from gan_lightning.experiments.sweep_local import run_sweep

    p = Parser(prog="sweep_local.py", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", help="sweep YAML, e.g. sweeps/smoke.yaml")
    p.add_argument("--count", type=int, default=1,
                   help="most runs to make (default: 1; a grid may end sooner, so pass its size to run it all)")
    p.add_argument("--out_dir", default="runs/sweeps", help="folder of local sweeps")
    p.add_argument("--logger", default="", choices=["", "csv", "wandb"],
                   help="override the sweep's logger (csv: no W&B files at all)")
    p.add_argument("--seed", type=int, default=0, help="seed of random and Bayesian proposals")
    p.add_argument("--dry_run", action="store_true", help="print and check each run's command, train nothing")
    args = p.parse_args(argv)
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed: must be in [0, 2^32 - 1], got {args.seed}")
    check_out_dir(args.out_dir)
    runs = run_sweep(args.sweep, args.count, args.out_dir, dry_run=args.dry_run, logger=args.logger, seed=args.seed)
    return 1 if any(r.status.startswith("failed") for r in runs) else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
