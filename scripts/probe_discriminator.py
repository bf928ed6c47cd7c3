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

import argparse
import functools
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from gan_lightning.config.flags import REMEDIES
from gan_lightning.runs.cli import DefaultsHelpFormatter, run_cli
from gan_lightning.errors import UsageError
from gan_lightning.runs.outputs import check_out_dir
from gan_lightning.diagnostics.probe_recipe import LR_SCHEDULES, PROBE_LR, PROBE_NORM, PROBE_NORMS, PROBE_SCHEDULE

# --quick and --full: a built-in data set and small networks, so they run on a CPU (2 cores: ~5 and
# ~45 minutes); --full is the default protocol (G after 1, 10, 25 epochs, 4,000 D iterations).
QUICK_TRAIN = {"dataset": "mnist5k", "image_size": 28, "g_width": 32, "d_width": 32, "accelerator": "cpu"}
QUICK_PROBE = {"g_epochs": "1,10", "d_iters": 1000, "grad_every": 25, "grad_batches": 2, "noise_std": "0,10"}
FULL_PROBE = {"g_epochs": "1,10,25", "d_iters": 4000, "grad_every": 20, "grad_batches": 4, "noise_std": "0,1,3,10"}
PRESETS = {"quick": QUICK_PROBE, "full": FULL_PROBE}
RESULTS = ("curves.csv", "summary.json", "results.md", "fig*.png")  # what a finished probe leaves in --out_dir
PROBE_REMEDIES = tuple(name for name in REMEDIES if name != "none")  # the --remedy presets that do something
NOT_FOR_PROBE = {"max_epochs": "--g_epochs", "max_steps": "--g_epochs", "resume": "--g_ckpt"}


def _numbers(kind: type, minimum: float, maximum: float):
    def parse(text: str) -> list:
        try:
            values = [kind(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}s, got {text!r}") from None
        if not values or not all(math.isfinite(v) and minimum <= v <= maximum for v in values):
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}s in [{minimum:g}, {maximum:g}], got {text!r}")
        return sorted(set(values))
    return parse


def _names(valid: Sequence[str]):
    """An argparse type: a comma-separated list of names of ``valid``, in the order given, no repeats."""
    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
        unknown = [n for n in names if n not in valid]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown name {unknown[0]!r}; valid names are: {', '.join(valid)}")
        return names
    return parse


def _scalar(kind: type, minimum: float, maximum: float):
    """An argparse type: one ``kind`` (int or float) in [minimum, maximum]."""
    expected = (f"an integer in [{minimum:,}, {maximum:,}]" if kind is int
                else f"a number in [{minimum:g}, {maximum:g}]")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def _count(maximum: int):
    return _scalar(int, 1, maximum)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="probe_discriminator.py", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                formatter_class=DefaultsHelpFormatter,
                epilog="Plus every flag of scripts/train.py --help.")
    p.add_argument("--g_epochs", type=_numbers(int, 1, 100_000), default="1,10,25", help="epochs at which to keep G")
    p.add_argument("--g_ckpt", default="", help="checkpoint(s) PATH[,PATH...] to take G from instead of training one")
    p.add_argument("--d_iters", type=_count(10_000_000), default="4000", help="D iterations per probe")
    p.add_argument("--noise_std", type=_numbers(float, 0, 1000), default=FULL_PROBE["noise_std"],
                   help="instance noise stds (data lie in [-1, 1])")
    p.add_argument("--grad_batches", type=_count(10_000), default="4", help="batches of z per gradient-norm measurement")
    p.add_argument("--grad_every", type=_count(10_000_000), default=str(FULL_PROBE["grad_every"]),
                   help="D iterations between gradient-norm measurements")
    p.add_argument("--remedies", type=_names(PROBE_REMEDIES), default="",
                   help=f"also probe with D trained under each of these --remedy presets, without noise "
                        f"(noise: at the preset's std): any of {', '.join(PROBE_REMEDIES)}")
    p.add_argument("--overlay_epochs", type=_count(100_000), default=None,
                   help="the G snapshot of fig_remedies.png (default: the last)")
    p.add_argument("--probe_norm", default=PROBE_NORM, choices=PROBE_NORMS,
                   help="normalization of the probe's D (batch: D's output depends on its batch)")
    p.add_argument("--probe_lr", type=_scalar(float, 1e-8, 1.0), default=PROBE_LR,
                   help="the probe D's Adam learning rate at its first update")
    p.add_argument("--probe_schedule", default=PROBE_SCHEDULE, choices=LR_SCHEDULES,
                   help="the probe D's learning rate: linear decay to 0 over --d_iters, or constant")
    for name, probe_flags in PRESETS.items():
        preset = " ".join(f"--{k} {v}" for k, v in {**QUICK_TRAIN, **probe_flags}.items())
        p.add_argument(f"--{name}", action="store_true", help=f"CPU preset, flags given still win: {preset}")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier probe in --out_dir")
    return p


def parse(argv: Sequence[str] | None = None):
    """(probe options, TrainConfig, keys given for the config) from the command line.

    Raises:
        UsageError: unknown flag, bad value, or a flag that makes no sense for the probe.
    """
    from gan_lightning.config import parse_args

    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    opts, rest = parser.parse_known_args(args)
    if opts.quick and opts.full:
        raise UsageError("--quick and --full exclude each other")
    chosen = "quick" if opts.quick else "full" if opts.full else None
    if chosen:  # the preset replaces the defaults; flags given still win
        parser.set_defaults(**{k: str(v) for k, v in PRESETS[chosen].items()})
        opts, rest = parser.parse_known_args(args)
    preset = [f"--{k}={v}" for k, v in QUICK_TRAIN.items()] if chosen else []
    cfg, given = parse_args(preset + rest)  # flags given later override the preset
    typed = {a.split("=")[0].lstrip("-") for a in args if a.startswith("--")}
    given -= set(QUICK_TRAIN) - typed  # "given" means typed by the user, not set by the preset
    if opts.overlay_epochs is not None and not opts.remedies:
        raise UsageError("--overlay_epochs picks the G snapshot of fig_remedies.png; it needs --remedies")
    if opts.overlay_epochs is not None and not opts.g_ckpt and opts.overlay_epochs not in opts.g_epochs:
        raise UsageError(f"--overlay_epochs {opts.overlay_epochs}: not one of --g_epochs {opts.g_epochs}")
    if opts.g_ckpt and "g_epochs" in typed:
        raise UsageError("--g_epochs and --g_ckpt exclude each other: train G, or load it from checkpoints")
    for key, instead in NOT_FOR_PROBE.items():
        if key in given:
            raise UsageError(f"--{key} does not apply to the probe; use {instead}")
    if cfg.logger not in ("csv", "wandb", "none"):
        raise UsageError(f"--logger {cfg.logger}: the probe logs to csv, wandb or none")
    if "out_dir" not in given:
        cfg.out_dir = f"runs/probe-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_out_dir(cfg.out_dir, results=RESULTS, overwrite=opts.overwrite)
    return opts, cfg, given


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, build the generators and the real data, run every probe, write the outputs."""
    import torch

    from gan_lightning.build import build_datamodule, build_gradient_regularizers, probe_discriminator, probe_norm
    from gan_lightning.diagnostics.probe import real_tensor
    from gan_lightning.experiments.probe_study import (D_REMEDY_KEYS, Arm, arm_configs, load_generators, run_study,
                                                       train_generators)
    from gan_lightning.experiments.probe_report import log_to_wandb, save_figures, write_outputs, write_report

    start = time.time()
    opts, cfg, given = parse(argv)
    out_dir = Path(cfg.out_dir)
    if opts.g_ckpt:
        snapshots, cfg = load_generators([p for p in opts.g_ckpt.split(",") if p.strip()], cfg, given)
    plans = arm_configs(cfg, given, opts.remedies, opts.noise_std)
    norms = [probe_norm(arm_cfg, opts.probe_norm) for _, arm_cfg, _ in plans]  # a refused norm stops before G trains
    if not opts.g_ckpt:
        snapshots = train_generators(cfg, opts.g_epochs)
    if opts.overlay_epochs is not None and opts.overlay_epochs not in [s.g_epochs for s in snapshots]:
        raise UsageError(f"--overlay_epochs {opts.overlay_epochs}: the checkpoints hold G after "
                         f"{sorted(s.g_epochs for s in snapshots)} epochs")
    dm = build_datamodule(cfg)
    real = real_tensor(dm.dataset("train"), seed=cfg.seed)
    use_gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    arms = [Arm(name, functools.partial(probe_discriminator, arm_cfg, dm.data_shape, norm),
                functools.partial(build_gradient_regularizers, arm_cfg), stds)
            for (name, arm_cfg, stds), norm in zip(plans, norms)]
    results = run_study(
        snapshots, real.to(device), arms,
        d_iters=opts.d_iters, batch_size=cfg.batch_size, lr=opts.probe_lr, betas=(cfg.beta1, cfg.beta2),
        lr_schedule=opts.probe_schedule, grad_batches=opts.grad_batches, grad_every=opts.grad_every,
        seed=cfg.seed, device=device, progress=True,
    )
    settings = {
        "d_iters": opts.d_iters, "noise_std": opts.noise_std, "grad_batches": opts.grad_batches,
        "grad_every": opts.grad_every, "batch_size": cfg.batch_size, "probe_norm": norms[0],
        "probe_lr": opts.probe_lr, "probe_schedule": opts.probe_schedule, "d_width": cfg.d_width,
        "betas": [cfg.beta1, cfg.beta2], "seed": cfg.seed, "quick": opts.quick, "full": opts.full,
        "generator_mode": "train (BatchNorm batch statistics)", "real_examples": len(real), "device": str(device),
        "generators": [{"g_epochs": s.g_epochs, "g_steps": s.g_steps, "source": s.source} for s in snapshots],
        "train_config": cfg.to_dict(), "wall_seconds": round(time.time() - start, 1),
        "arms": [{"remedy": name, "noise_std": stds, "probe_norm": norm,
                  **{k: getattr(arm_cfg, k) for k in D_REMEDY_KEYS}}
                 for (name, arm_cfg, stds), norm in zip(plans, norms)],
    }
    summary = write_outputs(out_dir, results, settings)
    write_report(out_dir, summary)
    figures = save_figures(out_dir, results, overlay_epochs=opts.overlay_epochs)
    if cfg.logger == "wandb":
        log_to_wandb(summary, figures, cfg.project, cfg.run_name or out_dir.name, out_dir,
                     say=lambda m: print(m, file=sys.stderr))
    for entry in summary["checkpoints"]:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
    for t in summary["targets"]:
        print(f"targets at G epoch {t['g_epochs']}: {'met' if t['met'] else 'missed'}")
    print(f"wrote {out_dir}/curves.csv, summary.json, results.md and {len(figures)} figures "
          f"in {settings['wall_seconds']:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
