"""Salimans et al. 2016 at a glance: semi-supervised error, mode coverage and a technique ablation.

What ``scripts/reproduce_improved_gan.py`` runs. Every run is an ordinary training run of
``scripts/train.py`` (``training.train`` in this process) with its own folder under
``<out_dir>/runs``, so its config, checkpoint, metrics.csv and sample grids can be looked at and
resumed like any other. The numbers are read back from the runs' metrics.csv.

Three studies (:data:`QUICK` and :data:`FULL` say how long each trains):

- ``semi_supervised``: the K+1 discriminator (``--task semi_supervised``) on mnist5k with the
  reference MNIST networks and 10 labels per class, against the same D trained on those labels
  alone for the same number of steps (:func:`~gan_lightning.ssl_baseline.supervised_baseline`).
- ``mode_coverage``: ring and grid, a plain GAN against one with minibatch discrimination, over seeds.
- ``ablation``: in the spirit of the paper's Table 3, DCGAN on mnist5k with one technique added at
  a time (and all of them), scored by FID and IS in the shipped LeNet feature space.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

# Each ablation variant: its name in the table and the flags it adds to the baseline DCGAN run.
ABLATION: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baseline", ()),
    ("feature matching", ("--g_objective", "feature_matching")),
    ("minibatch discrimination", ("--minibatch_discrimination",)),
    ("historical averaging", ("--historical_averaging", "0.001")),
    ("label smoothing", ("--label_smoothing", "0.9")),
    ("virtual batch norm", ("--g_norm", "vbn")),
    ("all", ("--g_objective", "feature_matching", "--minibatch_discrimination", "--historical_averaging", "0.001",
             "--label_smoothing", "0.9", "--g_norm", "vbn")),
)
# The reference MNIST code's semi-supervised settings.
SSL_FLAGS = ("--task", "semi_supervised", "--dataset", "mnist5k", "--arch", "improved_mnist", "--image_size", "28",
             "--batch_size", "100", "--lr_g", "0.003", "--lr_d", "0.003", "--metric_every_n_epochs", "0")
# The 2-D mixtures protocol (Metz et al. 2017; VEEGAN; PacGAN): a plain MLP GAN trained by G steps
# until its samples are sharp (most within 3 std of a mode), scored on 2,500 samples; a mode counts
# as covered with >= 20 high-quality samples. Adam at 1e-3 with batch 256 and z of 256 lets the
# baseline converge to sharp samples with modes missing; no normalization in G (batch norm in G
# mixes examples too, which would blur the comparison with minibatch discrimination).
COVERAGE_FLAGS = ("--arch", "mlp", "--z_dim", "256", "--g_width", "128", "--d_width", "128", "--g_norm", "none",
                  "--batch_size", "256", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta1", "0.5", "--max_epochs", "-1",
                  "--metric_num_samples", "2500")
ABLATION_FLAGS = ("--dataset", "mnist5k", "--metric_extractor", "lenet-mnist", "--metrics", "fid,is")


@dataclass(frozen=True)
class Settings:
    """How long each study trains; :data:`QUICK` fits in 15 minutes on two CPU cores."""

    ssl_epochs: int
    ssl_seeds: tuple[int, ...]
    labels_per_class: int
    coverage_steps: int  # G steps of each mode-coverage run
    coverage_seeds: tuple[int, ...]
    ablation_epochs: int
    ablation_samples: int
    ablation_seeds: tuple[int, ...] = (0,)
    ablation_variants: tuple[str, ...] = ()  # names of ABLATION to run; empty: all
    # Minibatch discrimination on 2-D points: the paper's B = 100 kernels of C = 5. One G step at
    # batch 256 then takes about 0.1 s on one CPU core, about 10x the plain GAN's step.
    coverage_mbd_kernels: int = 100
    coverage_mbd_dim: int = 5
    coverage_metric_every_n_epochs: int = 10  # also the curves in summary.json (an epoch: 39 G steps)
    coverage_sample_every_n_epochs: int = 32  # sample scatter plots for the mode-hopping strip
    extra: tuple[str, ...] = field(default=())  # flags added to every run (e.g. --accelerator gpu)


# Mode coverage on one CPU core: a plain G step ~12 ms, one with minibatch discrimination (B = 100)
# ~0.1 s, so one seed of both variants on both data sets costs ~0.22 s per G step. On the ring
# (2026-11-28, 5 seeds) the baseline's samples are mostly sharp by 4,000 G steps (high-quality
# fraction 0.83 +- 0.19; 0.87 +- 0.17 at 10,000) with 1-5 of 8 modes; with MBD they are still
# blurred at 4,000 (0.30) and only 1 of 2 seeds covered all 8 modes by 10,000. QUICK (~4 min) is
# a smoke run, far from converged; FULL (~45 min on CPU: 4,000 G steps, 3 seeds) shows the
# baseline's partial collapse but not MBD's convergence. The protocol's 10,000 steps over 5 seeds
# needs a GPU (--accelerator gpu in ``extra``): on CPU it would take ~3 h.
QUICK = Settings(ssl_epochs=30, ssl_seeds=(0, 1, 2), labels_per_class=10, coverage_steps=1000, coverage_seeds=(0,),
                 ablation_epochs=4, ablation_samples=2000)
FULL = Settings(ssl_epochs=150, ssl_seeds=(0, 1, 2, 3, 4), labels_per_class=10, coverage_steps=4000,
                coverage_seeds=(0, 1, 2), ablation_epochs=20, ablation_samples=5000, ablation_seeds=(0, 1, 2))


def train_run(flags: Sequence[str], out_dir: Path, name: str) -> Path:
    """Train one run of ``scripts/train.py`` with ``flags`` in this process; returns its folder.

    A folder that already holds a finished run (its config and checkpoint) is reused, so an
    interrupted reproduction can be started again and only trains what is missing.
    """
    from gan_lightning.config import parse_args
    from gan_lightning.training import train

    run_dir = out_dir / name
    if (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "done").is_file():
        return run_dir
    cfg, given = parse_args([*flags, "--out_dir", str(out_dir), "--run_name", name,
                             *(["--resume", "last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else [])])
    if train(cfg, given).preempted:  # SIGTERM: last.ckpt is saved; started again, this run resumes
        raise KeyboardInterrupt
    (run_dir / "done").write_text("finished\n")
    return run_dir


def last(run_dir: Path, key: str) -> float:
    """The last value of ``key`` in a run's metrics.csv (nan if it was never logged)."""
    from gan_lightning.sweeps import read_metric

    values = read_metric(run_dir / "metrics.csv", key)
    return values[-1] if values else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# -- semi-supervised -------------------------------------------------------------------------------
def semi_supervised(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """K+1 GAN vs supervised-only on the same labels, one pair per seed (the seed also draws the labels).

    Returns:
        The ``semi_supervised`` part of summary.json, plus per-seed errors and test-error curves.
    """
    import lightning as L

    from gan_lightning.build import build_datamodule, build_networks
    from gan_lightning.config import parse_args
    from gan_lightning.ssl_baseline import classifier_error, supervised_baseline
    from gan_lightning.sweeps import read_metric

    flags = [*SSL_FLAGS, "--labels_per_class", str(settings.labels_per_class), "--max_epochs",
             str(settings.ssl_epochs), *settings.extra]
    ssl, supervised, ssl_live, supervised_live, curves = [], [], [], [], {}
    for seed in settings.ssl_seeds:
        say(f"semi-supervised: seed {seed}, {settings.ssl_epochs} epochs")
        run_dir = train_run([*flags, "--seed", str(seed)], out_dir, f"ssl-seed{seed}")
        ssl.append(last(run_dir, "ssl/test_error"))
        ssl_live.append(last(run_dir, "ssl/test_error_live"))
        curves[seed] = read_metric(run_dir / "metrics.csv", "ssl/test_error")
        cfg, _ = parse_args([*flags, "--seed", str(seed)])
        dm = build_datamodule(cfg)
        dm.setup("fit")
        steps = settings.ssl_epochs * (len(dm.unlabeled_dataset) // cfg.batch_size)
        say(f"supervised only: seed {seed}, {steps} steps on {len(dm.labeled_dataset)} labels")
        L.seed_everything(seed, verbose=False)
        d = build_networks(cfg, dm.data_shape)[1]
        supervised.append(supervised_baseline(d, dm, steps, lr=cfg.lr_d, beta1=cfg.beta1, beta2=cfg.beta2,
                                              ema_decay=cfg.ema_decay, lr_decay_steps=cfg.lr_decay_steps))
        supervised_live.append(classifier_error(d, dm.val_dataloader()))  # D itself, not its average
    (ssl_mean, ssl_std), (sup_mean, sup_std) = mean_std(ssl), mean_std(supervised)
    return {
        "dataset": "mnist5k", "labels": 10 * settings.labels_per_class, "test_size": len(dm.dataset("test")),
        "unlabeled": len(dm.unlabeled_dataset), "epochs": settings.ssl_epochs, "steps": steps,
        "test_error": ssl_mean, "test_error_std": ssl_std,
        "supervised_only_error": sup_mean, "supervised_only_error_std": sup_std,
        "seeds": list(settings.ssl_seeds), "test_error_per_seed": ssl, "supervised_only_per_seed": supervised,
        # the same with the live weights (the EMA can average across a late jump of the weights)
        "test_error_live_per_seed": ssl_live, "supervised_only_live_per_seed": supervised_live,
        "curves": {str(k): v for k, v in curves.items()},
    }


# -- mode coverage ---------------------------------------------------------------------------------
def mode_coverage(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """ring and grid: modes covered and high-quality fraction, baseline vs minibatch discrimination.

    Returns:
        {dataset: {variant: {modes, modes_std, high_quality, high_quality_std, modes_per_seed,
        high_quality_per_seed, runs, seeds, curves, g_steps, flags}}}. ``curves`` maps each seed to its
        (G step, modes covered, high-quality fraction) evaluations, to tell a converged partial
        collapse (sharp samples, modes missing for good) from under-training (blurred samples).
    """
    from gan_lightning.metrics import metric_key

    modes_key, quality_key = metric_key("modes_covered", 2500), metric_key("high_quality", 2500)
    mbd = ("--minibatch_discrimination", "--mbd_kernels", str(settings.coverage_mbd_kernels),
           "--mbd_dim", str(settings.coverage_mbd_dim))
    every = ("--metric_every_n_epochs", str(settings.coverage_metric_every_n_epochs),
             "--sample_every_n_epochs", str(settings.coverage_sample_every_n_epochs))
    out: dict[str, Any] = {}
    for dataset in ("ring", "grid"):
        out[dataset] = {}
        for variant, extra in (("baseline", ()), ("minibatch_discrimination", mbd)):
            modes, quality, runs, curves = [], [], [], {}
            for seed in settings.coverage_seeds:
                say(f"mode coverage: {dataset}, {variant}, seed {seed}, {settings.coverage_steps} G steps")
                run_dir = train_run(
                    [*COVERAGE_FLAGS, "--dataset", dataset, *extra, "--seed", str(seed),
                     "--max_steps", str(settings.coverage_steps), *every, *settings.extra],
                    out_dir, f"{dataset}-{variant}-seed{seed}",
                )
                modes.append(last(run_dir, modes_key))
                quality.append(last(run_dir, quality_key))
                runs.append(str(run_dir))
                curves[str(seed)] = coverage_curve(run_dir, modes_key, quality_key)
            (m, m_std), (q, q_std) = mean_std(modes), mean_std(quality)
            out[dataset][variant] = {"modes": m, "modes_std": m_std, "high_quality": q, "high_quality_std": q_std,
                                     "modes_per_seed": modes, "high_quality_per_seed": quality, "runs": runs,
                                     "seeds": list(settings.coverage_seeds), "curves": curves,
                                     "g_steps": settings.coverage_steps, "flags": " ".join([*COVERAGE_FLAGS, *extra])}
    return out


def coverage_curve(run_dir: Path, modes_key: str, quality_key: str) -> dict[str, list[float]]:
    """The G steps at which a run scored mode coverage, with modes covered and high-quality fraction."""
    import csv

    curve: dict[str, list[float]] = {"step": [], "modes": [], "high_quality": []}
    with (run_dir / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get(modes_key):
                curve["step"].append(int(row["step"]) + 1)  # the logged step counts from 0
                curve["modes"].append(float(row[modes_key]))
                curve["high_quality"].append(float(row[quality_key]))
    return curve


# -- ablation ----------------------------------------------------------------------------------------
def ablation(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """DCGAN on mnist5k, one technique at a time: FID and IS (LeNet features) after training."""
    from gan_lightning.metrics import metric_key

    n = settings.ablation_samples
    rows = []
    for name, extra in ABLATION:
        if settings.ablation_variants and name not in settings.ablation_variants:
            continue
        fids, iss = [], []
        for seed in settings.ablation_seeds:
            say(f"ablation: {name}, seed {seed}")
            run_dir = train_run(
                [*ABLATION_FLAGS, *extra, "--seed", str(seed), "--max_epochs", str(settings.ablation_epochs),
                 "--metric_every_n_epochs", str(settings.ablation_epochs), "--metric_num_samples", str(n),
                 *settings.extra],
                out_dir, f"ablation-{name.replace(' ', '_')}-seed{seed}",
            )
            fids.append(last(run_dir, metric_key("fid", n, "lenet")))
            iss.append(last(run_dir, metric_key("is_mean", n, "lenet")))
        (fid, fid_std), (is_mean, is_std) = mean_std(fids), mean_std(iss)
        rows.append({"techniques": name, "flags": " ".join(extra), "fid": fid, "fid_std": fid_std,
                     "is_mean": is_mean, "is_mean_std": is_std, "seeds": list(settings.ablation_seeds),
                     "run": str(run_dir)})
    return rows


STUDIES: dict[str, Callable[[Settings, Path, Callable[[str], None]], Any]] = {
    "semi_supervised": semi_supervised,
    "mode_coverage": mode_coverage,
    "ablation": ablation,
}
