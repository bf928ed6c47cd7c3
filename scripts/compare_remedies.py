#!/usr/bin/env python
"""The stability remedies side by side: FID, D's accuracy and the frozen-G probe per remedy over seeds.

For every seed and --remedy preset (none, noise, r1, roth, sn, wgan_gp) one training run of a small
DCGAN on mnist5k (non-saturating loss), then per seed the probe of that seed's G without a remedy
with a D trained under each remedy. Writes <out_dir>/summary.json, results.md, fig_remedies_table.png,
the run folders under <out_dir>/runs and the probes under <out_dir>/probe-seed<N> (started again, it
reuses the runs and probes that finished).

    python scripts/compare_remedies.py --out_dir runs/remedies_quick      # 2 CPU cores: ~40 minutes
    python scripts/compare_remedies.py --remedies none,r1 --seeds 0 --epochs 2
"""

import sys

from gan_lightning.runs.cli import DefaultsHelpFormatter, Parser, count, names, run_cli, seeds


def main(argv=None) -> int:
    from gan_lightning.config import REMEDIES
    from gan_lightning.experiments import remedies as study

    q, n = study.QUICK, count(10_000_000, malformed="an integer >= 1")
    p = Parser(prog="compare_remedies.py", description=__doc__.split("\n\n")[0], allow_abbrev=False,
               formatter_class=DefaultsHelpFormatter)
    p.add_argument("--remedies", type=names(REMEDIES, required=True), default=",".join(q.remedies),
                   help="the --remedy presets to compare")
    p.add_argument("--seeds", type=seeds, default=",".join(map(str, q.seeds)), help="seeds of every remedy")
    p.add_argument("--epochs", type=n, default=q.epochs, help="epochs per training run")
    p.add_argument("--max_steps", type=n, default=None, help="stop each run after this many G steps (a smoke test)")
    p.add_argument("--d_iters", type=n, default=q.d_iters, help="probe: D iterations per remedy")
    p.add_argument("--grad_every", type=n, default=q.grad_every, help="probe: D iterations between gradient norms")
    p.add_argument("--grad_batches", type=n, default=q.grad_batches, help="probe: batches of z per gradient norm")
    p.add_argument("--jobs", type=n, default=1, help="training runs at once, each a process with one thread")
    p.add_argument("--out_dir", default="runs/remedies_quick", help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the summary and figure of an earlier comparison (finished runs are reused either way)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    settings = study.Settings(epochs=args.epochs, seeds=args.seeds, remedies=tuple(args.remedies), d_iters=args.d_iters,
                              grad_every=args.grad_every, grad_batches=args.grad_batches,
                              max_steps=args.max_steps or -1, jobs=args.jobs)
    return study.compare(settings, args.out_dir, args.overwrite)


if __name__ == "__main__":
    sys.exit(run_cli(main))
