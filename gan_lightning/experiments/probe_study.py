"""The probe study of scripts/probe_discriminator.py: the generators to probe (trained here, or
loaded from checkpoints) and :func:`gan_lightning.diagnostics.probe.probe` run on each of them for
every arm: a remedy (a way of training the probe's D) at each of its noise stds; the script's presets
and flag checks (:func:`parse_flags`) and the whole study from its flags (:func:`run`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import Tensor, nn

from gan_lightning.config.flags import G_SHAPE_KEYS, REMEDIES, SHAPE_KEYS, shape_keys
from gan_lightning.diagnostics.probe import probe, summarize
from gan_lightning.errors import UsageError
from gan_lightning.lightning_state import epochs_done

# --quick and --full: a built-in data set and small networks, so they run on a CPU (2 cores: ~5 and
# ~45 minutes); --full is the default protocol (G after 1, 10, 25 epochs, 4,000 D iterations).
QUICK_TRAIN = {"dataset": "mnist5k", "image_size": 28, "g_width": 32, "d_width": 32, "accelerator": "cpu"}
QUICK_PROBE = {"g_epochs": "1,10", "d_iters": 1000, "grad_every": 25, "grad_batches": 2, "noise_std": "0,10"}
FULL_PROBE = {"g_epochs": "1,10,25", "d_iters": 4000, "grad_every": 20, "grad_batches": 4, "noise_std": "0,1,3,10"}
PRESETS = {"quick": QUICK_PROBE, "full": FULL_PROBE}
RESULTS = ("curves.csv", "summary.json", "results.md", "fig*.png")  # what a finished probe leaves in --out_dir
PROBE_REMEDIES = tuple(name for name in REMEDIES if name != "none")  # the --remedy presets that do something
NOT_FOR_PROBE = {"max_epochs": "--g_epochs", "max_steps": "--g_epochs", "resume": "--g_ckpt"}


# -- the generators to probe ------------------------------------------------------------------
@dataclass
class Snapshot:
    """A generator to probe: trained for ``g_epochs`` epochs (``g_steps`` updates), from ``source``."""

    g_epochs: int
    g_steps: int
    generator: nn.Module
    source: str


def train_generators(cfg: Any, epochs: Sequence[int], progress: bool = True) -> list[Snapshot]:
    """Train one GAN for ``max(epochs)`` epochs and copy its generator after each of ``epochs``.

    Args:
        cfg: the TrainConfig of the run; ``max_epochs``, ``max_steps`` and the output flags are
            ignored. One device (``cfg.accelerator``), no logger, no checkpoints.
        epochs: epoch counts to snapshot at, each >= 1.
        progress: show Lightning's progress bar.

    Returns:
        One snapshot per epoch count, in increasing order, generators on the CPU.
    """
    import lightning as L

    from gan_lightning.build import build_datamodule, build_module
    from gan_lightning.config import resolve

    wanted = sorted(set(epochs))
    snaps: list[Snapshot] = []

    class _Snapshots(L.Callback):
        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            done = trainer.current_epoch + 1
            if done in wanted:
                g = copy.deepcopy(pl_module.generator).cpu()
                snaps.append(Snapshot(done, int(pl_module.g_steps), g, "trained"))

    cfg = resolve(cfg)
    dm = build_datamodule(cfg)
    dm.check()
    L.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, dm.data_shape)
    trainer = L.Trainer(
        accelerator=cfg.accelerator, devices=1, precision=cfg.precision, max_epochs=wanted[-1],
        logger=False, enable_checkpointing=False, callbacks=[_Snapshots()],
        enable_progress_bar=progress and sys.stderr.isatty(), enable_model_summary=False,  # no bars in log files
    )
    trainer.fit(module, datamodule=dm)
    return snaps


def load_generator(path: str | Path) -> tuple[Snapshot, dict[str, Any]]:
    """The generator of a gan_lightning checkpoint and the config stored with it.

    ``g_epochs`` is the number of epochs the run had finished when the file was written.

    Raises:
        UsageError: a missing, unreadable or foreign file, or weights that do not fit its config.
    """
    from gan_lightning.runs.folder import load

    loaded = load(path)
    module, ckpt = loaded.module, loaded.checkpoint
    epochs = epochs_done(ckpt)
    epochs = int(epochs) if epochs is not None else int(ckpt.get("epoch", 0))
    return Snapshot(epochs, int(module.g_steps), module.generator, str(path)), dict(loaded.stored)


def load_generators(paths: Sequence[str], cfg: Any, given: set[str]) -> tuple[list[Snapshot], Any]:
    """Generators from checkpoints, and the config to probe them with.

    The networks and the data (``SHAPE_KEYS`` but the task, and ``data_root``) come from the first
    checkpoint's config, unless the user gave them (``given``); the flags that fix G (``G_SHAPE_KEYS``, a
    layer's size where the layer is on) must then not differ from it. Everything else (batch size, seed,
    logger, ...) comes from ``cfg``, not the checkpoint.

    Raises:
        UsageError: a bad file, checkpoints trained on different data, or a flag that contradicts them.
    """
    from gan_lightning.config import config_from_dict, resolve, validate

    loaded = [load_generator(p.strip()) for p in paths]
    stored = loaded[0][1]
    for snap, other in loaded[1:]:
        if any(other.get(k) != stored.get(k) for k in ("dataset", "image_size")):
            raise UsageError(f"{snap.source} was trained on other data than {loaded[0][0].source}")
    # Not the task: the probe trains the D of a GAN against G, whatever task G was trained in.
    taken = {k: stored[k] for k in (*SHAPE_KEYS, "data_root") if k != "task" and k in stored and k not in given}
    cfg = config_from_dict({**cfg.to_dict(), **taken})  # a given key keeps its value: the clash below reads it
    clash = [k for k in shape_keys(cfg, G_SHAPE_KEYS) if k in given and k in stored and getattr(cfg, k) != stored[k]]
    if clash:
        raise UsageError(f"--{clash[0]}={getattr(cfg, clash[0])} differs from the checkpoint's "
                         f"{stored[clash[0]]!r}; omit it with --g_ckpt")
    validate(resolve(cfg))
    return [snap for snap, _ in loaded], cfg


# -- a whole study and its files --------------------------------------------------------------
@dataclass
class Arm:
    """One way of training the probe's D: a remedy's name, its D, its penalties (built fresh for each
    probe) and the instance-noise stds it runs at."""

    remedy: str
    make_discriminator: Callable[[], nn.Module]
    make_penalties: Callable[[], list[nn.Module]]
    noise_stds: Sequence[float]


# What the probe's D takes from a remedy: the penalties on D and spectral norm, and instance noise.
D_REMEDY_KEYS = ("gp_weight", "r1_weight", "r2_weight", "roth_gamma", "d_spectral_norm")
REMEDY_KEYS = (*D_REMEDY_KEYS, "noise_std", "noise_schedule")


def base_label(cfg: Any) -> str:
    """The name of the arm that trains D as the flags say: ``--remedy``, else "none" when no flag
    regularizes D, else "flags"."""
    from gan_lightning.config import TrainConfig

    if cfg.remedy != "none":
        return cfg.remedy
    plain = TrainConfig()
    return "none" if all(getattr(cfg, k) == getattr(plain, k) for k in D_REMEDY_KEYS) else "flags"


def arm_configs(cfg: Any, given: set[str], remedies: Sequence[str],
                noise_stds: Sequence[float]) -> list[tuple[str, Any, list[float]]]:
    """(name, resolved config, noise stds) of each arm of a study.

    The first arm trains D as the flags say, at every std of ``noise_stds``. Each of ``remedies``
    (names of :data:`gan_lightning.config.REMEDIES`) adds an arm that starts from the flags with every
    remedy off and turns its own on with the preset's settings (a value given on the command line
    wins); it runs without noise, except ``noise``, which runs at the preset's std.
    """
    from gan_lightning.config import REMEDIES, TrainConfig, config_from_dict, resolve

    plain = TrainConfig()
    arms = [(base_label(cfg), resolve(cfg), list(noise_stds))]
    for name in remedies:
        preset = {k: getattr(cfg, k) if k in given else v for k, v in REMEDIES[name].items()}
        off = {k: getattr(plain, k) for k in REMEDY_KEYS}
        arm = resolve(config_from_dict({**cfg.to_dict(), **off, **preset, "remedy": name, "d_norm": "auto"}))
        arms.append((name, arm, [arm.noise_std]))
    return arms


def run_study(snapshots: Sequence[Snapshot], real_data: Tensor, arms: Sequence[Arm],
              **probe_kwargs: Any) -> list[dict[str, Any]]:
    """``probe`` every snapshot with every arm at each of its noise stds, all with the same seed (same
    batches and latents; the same D initialization where the arms' D are the same network).

    Returns:
        One dict per probe: ``remedy``, ``g_epochs``, ``noise_std``, ``rows`` (probe's output), ``summary``.
    """
    results = []
    for snap in snapshots:
        for arm in arms:
            for std in arm.noise_stds:
                label = f"noise {std:g}" if arm.remedy == "none" else f"{arm.remedy}, noise {std:g}"
                rows = probe(snap.generator, real_data, arm.make_discriminator, noise_std=std,
                             penalties=arm.make_penalties(), desc=f"D vs G@{snap.g_epochs} ep, {label}",
                             **probe_kwargs)
                results.append({"remedy": arm.remedy, "g_epochs": snap.g_epochs, "noise_std": std, "rows": rows,
                                "summary": summarize(rows)})
    return results


# -- the script -------------------------------------------------------------------------------
def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    """(probe options, TrainConfig, keys given for the config) from the command line: ``parser``'s flags
    (scripts/probe_discriminator.py's), the rest of train.py's.

    Raises:
        UsageError: unknown flag, bad value, or a flag that makes no sense for the probe.
    """
    from gan_lightning.config import parse_args
    from gan_lightning.trainer.outputs import check_out_dir

    args = list(sys.argv[1:] if argv is None else argv)
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
        cfg = dataclasses.replace(cfg, out_dir=f"runs/probe-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_out_dir(cfg.out_dir, results=RESULTS, overwrite=opts.overwrite)
    return opts, cfg, given


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse (:func:`parse_flags`), build the generators and the real data, run every probe, write the outputs."""
    import torch

    from gan_lightning.build import build_datamodule, build_gradient_regularizers, probe_discriminator, probe_norm
    from gan_lightning.config import resolve
    from gan_lightning.diagnostics.probe import real_tensor
    from gan_lightning.experiments.probe_report import log_to_wandb, save_figures, write_outputs, write_report

    start = time.time()
    opts, cfg, given = parse_flags(parser, argv)
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
    dm = build_datamodule(resolve(cfg))
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
          f"in {settings['wall_seconds']:.0f} s", file=sys.stderr)
    return 0
