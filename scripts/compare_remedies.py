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

import argparse
import sys
import time

from gan_lightning.errors import UsageError
from gan_lightning.runs.cli import DefaultsHelpFormatter, run_cli
from gan_lightning.runs.outputs import check_out_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def _names(text: str) -> tuple[str, ...]:
    from gan_lightning.config import REMEDIES

    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in REMEDIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected names of {', '.join(REMEDIES)}, got {text!r}")
    return names


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(dict.fromkeys(int(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of seeds, got {text!r}") from None
    if not seeds or not all(0 <= s < 2**32 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds in [0, 2^32), got {text!r}")
    return seeds


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, 10,000,000], got {text!r}")
    return value


def main(argv=None) -> int:
    from gan_lightning.experiments import remedies as study

    q = study.QUICK
    p = _Parser(prog="compare_remedies.py", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--remedies", type=_names, default=",".join(q.remedies), help="the --remedy presets to compare")
    p.add_argument("--seeds", type=_seeds, default=",".join(map(str, q.seeds)), help="seeds of every remedy")
    p.add_argument("--epochs", type=_count, default=q.epochs, help="epochs per training run")
    p.add_argument("--max_steps", type=_count, default=None, help="stop each run after this many G steps (a smoke test)")
    p.add_argument("--d_iters", type=_count, default=q.d_iters, help="probe: D iterations per remedy")
    p.add_argument("--grad_every", type=_count, default=q.grad_every, help="probe: D iterations between gradient norms")
    p.add_argument("--grad_batches", type=_count, default=q.grad_batches, help="probe: batches of z per gradient norm")
    p.add_argument("--jobs", type=_count, default=1, help="training runs at once, each a process with one thread")
    p.add_argument("--out_dir", default="runs/remedies_quick", help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the summary and figure of an earlier comparison (finished runs are reused either way)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if "none" not in args.remedies:
        raise UsageError("--remedies must include none: the probe takes G from the runs without a remedy")
    check_out_dir(args.out_dir, results=("summary.json", "results.md"), overwrite=args.overwrite)
    from pathlib import Path

    settings = study.Settings(epochs=args.epochs, seeds=args.seeds, remedies=args.remedies, d_iters=args.d_iters,
                              grad_every=args.grad_every, grad_batches=args.grad_batches,
                              max_steps=args.max_steps or -1, jobs=args.jobs)
    start, out_dir = time.time(), Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = study.train_all(settings, out_dir, say=print)
    probes = study.probe_all(settings, runs, out_dir, say=print)
    rows = study.summarize(settings, runs, probes)
    written = study.write_outputs(out_dir, settings, rows, time.time() - start)
    print((out_dir / "results.md").read_text())
    print("wrote " + ", ".join(str(w) for w in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
