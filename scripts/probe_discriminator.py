#!/usr/bin/env python
"""The frozen-generator probe of Arjovsky & Bottou 2017 (Figs. 1-3, Sec. 3).

Train a GAN and keep its generator at several epochs (or load generators from checkpoints),
then train a fresh discriminator against each frozen generator, with and without instance
noise, and write curves.csv, summary.json, results.md and the figures into --out_dir.

    python scripts/probe_discriminator.py --quick --out_dir runs/probe_quick     # CPU, ~5 minutes
    python scripts/probe_discriminator.py --full --out_dir runs/probe            # CPU, the default protocol
    python scripts/probe_discriminator.py --dataset lsun --data_root data/lsun --image_size 64
    python scripts/probe_discriminator.py --quick --remedies noise,r1,roth,sn --out_dir runs/probe_remedies

Besides the flags of --help, every flag of scripts/train.py (the TrainConfig fields) sets up
the GAN that trains G; --d_width, --batch_size, --beta1, --beta2 and --seed also set up the probe's
D, which is the run's D architecture with --probe_norm, trained at --probe_lr (--lr_d is G's GAN's).
The remedy flags (--r1_weight, --roth_gamma, --d_spectral_norm, --gp_weight, --remedy) regularize
the probe's D as they would the run's; --remedies adds one probe per remedy (fig_remedies.png).
On a CPU shared with other jobs, OMP_NUM_THREADS=1 avoids thread oversubscription (10x slower).
"""

from __future__ import annotations

import sys
from typing import Sequence

from gan_lightning.diagnostics.probe_recipe import LR_SCHEDULES, PROBE_LR, PROBE_NORM, PROBE_NORMS, PROBE_SCHEDULE
from gan_lightning.experiments.probe_study import FULL_PROBE, PRESETS, PROBE_REMEDIES, QUICK_TRAIN, run
from gan_lightning.runs.cli import DefaultsHelpFormatter, Parser, count, names, numbers, run_cli, scalar


def _parser() -> Parser:
    p = Parser(prog="probe_discriminator.py", description=__doc__.split("\n\n")[0], allow_abbrev=False,
               formatter_class=DefaultsHelpFormatter,
               epilog="Plus every flag of scripts/train.py --help.")
    p.add_argument("--g_epochs", type=numbers(int, 1, 100_000), default="1,10,25", help="epochs at which to keep G")
    p.add_argument("--g_ckpt", default="", help="checkpoint(s) PATH[,PATH...] to take G from instead of training one")
    p.add_argument("--d_iters", type=count(10_000_000), default="4000", help="D iterations per probe")
    p.add_argument("--noise_std", type=numbers(float, 0, 1000), default=FULL_PROBE["noise_std"],
                   help="instance noise stds (data lie in [-1, 1])")
    p.add_argument("--grad_batches", type=count(10_000), default="4", help="batches of z per gradient-norm measurement")
    p.add_argument("--grad_every", type=count(10_000_000), default=str(FULL_PROBE["grad_every"]),
                   help="D iterations between gradient-norm measurements")
    p.add_argument("--remedies", type=names(PROBE_REMEDIES), default="",
                   help=f"also probe with D trained under each of these --remedy presets, without noise "
                        f"(noise: at the preset's std): any of {', '.join(PROBE_REMEDIES)}")
    p.add_argument("--overlay_epochs", type=count(100_000), default=None,
                   help="the G snapshot of fig_remedies.png (default: the last)")
    p.add_argument("--probe_norm", default=PROBE_NORM, choices=PROBE_NORMS,
                   help="normalization of the probe's D (batch: D's output depends on its batch)")
    p.add_argument("--probe_lr", type=scalar(float, 1e-8, 1.0), default=PROBE_LR,
                   help="the probe D's Adam learning rate at its first update")
    p.add_argument("--probe_schedule", default=PROBE_SCHEDULE, choices=LR_SCHEDULES,
                   help="the probe D's learning rate: linear decay to 0 over --d_iters, or constant")
    for name, probe_flags in PRESETS.items():
        preset = " ".join(f"--{k} {v}" for k, v in {**QUICK_TRAIN, **probe_flags}.items())
        p.add_argument(f"--{name}", action="store_true", help=f"CPU preset, flags given still win: {preset}")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier probe in --out_dir")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build the generators and the real data, run every probe, write the outputs."""
    return run(_parser(), argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
