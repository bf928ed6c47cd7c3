"""Salimans et al. 2016 at a glance: semi-supervised error, mode coverage and a technique ablation.

What ``scripts/reproduce_improved_gan.py`` runs. Every run is an ordinary training run of
``scripts/train.py`` (``training.train`` in this process) with its own folder under
``<out_dir>/runs``, so its config, checkpoint, metrics.csv and sample grids can be looked at and
resumed like any other. The numbers are read back from the runs' metrics.csv.

Three studies (:data:`QUICK` and :data:`FULL` say how long each trains):

- ``semi_supervised``: the K+1 discriminator (``--task semi_supervised``) on mnist5k with the
  reference MNIST networks and recipe (:data:`SSL_FLAGS`) and 10 labels per class, against the
  same D trained on those labels alone for the same number of steps (:func:`supervised_run`).
- ``mode_coverage``: ring and grid, a plain GAN against one with minibatch discrimination, over seeds.
- ``ablation``: the design of the paper's Table 3 on a small DCGAN on mnist5k: the full
  unsupervised recipe, that recipe less one technique at a time, the plain DCGAN and feature
  matching on its own, scored by FID and IS in the shipped LeNet feature space over seeds.

The runs of a study are independent; :func:`run_jobs` trains them ``Settings.jobs`` at a time.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

# The ablation after the paper's Table 3: its full unsupervised recipe (the "-L+HA" row: minibatch
# discrimination, virtual batch norm, one-sided label smoothing, historical averaging), then that
# recipe with one technique removed at a time, the plain DCGAN, and feature matching (the
# semi-supervised objective) in a row of its own. Each row: its name and the flags it adds to the
# plain DCGAN run.
_MBD = ("--minibatch_discrimination",)
_VBN = ("--g_norm", "vbn")
_LS = ("--label_smoothing", "0.9")
_HA = ("--historical_averaging", "0.001")
ABLATION: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baseline", ()),
    ("full recipe", (*_MBD, *_VBN, *_LS, *_HA)),
    ("-VBN +BN", (*_MBD, *_LS, *_HA)),
    ("-LS", (*_MBD, *_VBN, *_HA)),
    ("-HA", (*_MBD, *_VBN, *_LS)),
    ("-MBD", (*_VBN, *_LS, *_HA)),
    ("feature matching", ("--g_objective", "feature_matching")),
)
# The reference MNIST code's semi-supervised settings (its networks: --arch improved_mnist). Its
# Adam adds 1e-8 under the square root, which acts as about 1e-4 in torch's form (added outside
# it). D's loss is logged at every step, so summary.json can report its largest value.
SSL_FLAGS = ("--task", "semi_supervised", "--dataset", "mnist5k", "--arch", "improved_mnist", "--image_size", "28",
             "--batch_size", "100", "--lr_g", "0.003", "--lr_d", "0.003", "--adam_eps", "1e-4",
             "--metric_every_n_epochs", "0", "--log_every_n_steps", "1")
# The 2-D mixtures protocol (Metz et al. 2017; VEEGAN; PacGAN): a plain MLP GAN trained by G steps
# until its samples are sharp (most within 3 std of a mode), scored on 2,500 samples; a mode counts
# as covered with >= 20 high-quality samples. Adam at 1e-3 with batch 256 and z of 256 lets the
# baseline converge to sharp samples with modes missing; no normalization in G (batch norm in G
# mixes examples too, which would blur the comparison with minibatch discrimination).
COVERAGE_FLAGS = ("--arch", "mlp", "--z_dim", "256", "--g_width", "128", "--d_width", "128", "--g_norm", "none",
                  "--batch_size", "256", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta1", "0.5", "--max_epochs", "-1",
                  "--metric_num_samples", "2500")
SSL_SETTLE_STEPS = 50  # D's loss is reported from this step on (the start of training may spike)
# A small DCGAN (28 x 28, 32 base channels): a step takes ~0.08 s on one core (~0.18 s with MBD and
# VBN), so 3 seeds of every row train in the CPU budget.
ABLATION_FLAGS = ("--dataset", "mnist5k", "--image_size", "28", "--g_width", "32", "--d_width", "32",
                  "--metric_extractor", "lenet-mnist", "--metrics", "fid,is")


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
    ablation_evaluations: int = 4  # FID/IS evaluations per ablation run (the last at its end): the FID curve
    ablation_variants: tuple[str, ...] = ()  # names of ABLATION to run; empty: all
    # Minibatch discrimination on 2-D points: the paper's B = 100 kernels of C = 5. One G step at
    # batch 256 then takes about 0.1 s on one CPU core, about 10x the plain GAN's step.
    coverage_mbd_kernels: int = 100
    coverage_mbd_dim: int = 5
    coverage_metric_every_n_epochs: int = 10  # also the curves in summary.json (an epoch: 39 G steps)
    coverage_sample_every_n_epochs: int = 32  # sample scatter plots for the mode-hopping strip
    extra: tuple[str, ...] = field(default=())  # flags added to every run (e.g. --accelerator gpu)
    jobs: int = 1  # training runs at once, each in its own process with one thread (CPU: one per core)


# Cost on the 2-core CPU machine, two runs at a time (--jobs 2), 2026-11-28:
# - semi_supervised: a K+1 run of 60 epochs (2,400 D steps) ~4 min, its labels-only control ~1 min.
# - mode_coverage: a plain G step ~12 ms, one with minibatch discrimination (B = 100) ~0.1 s. On the
#   ring (5 seeds) the baseline's samples are mostly sharp by 4,000 G steps (high-quality fraction
#   0.83 +- 0.19; 0.87 +- 0.17 at 10,000) with 1-5 of 8 modes; with MBD they are still blurred at
#   4,000 (0.30) and only 1 of 2 seeds covered all 8 modes by 10,000. QUICK's 1,000 steps are a
#   smoke run; FULL's 4,000 show the baseline's partial collapse but not MBD's convergence. The
#   protocol's 10,000 steps over 5 seeds needs a GPU (--accelerator gpu): ~3 h on this CPU.
# - ablation: a DCGAN step ~0.08 s, ~0.18 s with MBD and VBN; an epoch is 78 steps.
QUICK = Settings(ssl_epochs=40, ssl_seeds=(0, 1, 2), labels_per_class=10, coverage_steps=1000, coverage_seeds=(0,),
                 ablation_epochs=3, ablation_samples=2000, ablation_evaluations=1)
FULL = Settings(ssl_epochs=60, ssl_seeds=(0, 1, 2, 3, 4), labels_per_class=10, coverage_steps=4000,
                coverage_seeds=(0, 1, 2), ablation_epochs=20, ablation_samples=5000, ablation_seeds=(0, 1, 2))


def train_run(flags: Sequence[str], out_dir: Path, name: str) -> Path:
    """Train one run of ``scripts/train.py`` with ``flags`` in this process; returns its folder.

    A folder that already holds a finished run (its config and checkpoint) is reused, so an
    interrupted reproduction can be started again and only trains what is missing.
    """
    from gan_lightning.config import parse_args
    from gan_lightning.runs.training import train

    run_dir = out_dir / name
    if (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "done").is_file():
        return run_dir
    cfg, given = parse_args([*flags, "--out_dir", str(out_dir), "--run_name", name,
                             *(["--resume", "last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else [])])
    if train(cfg, given).preempted:  # SIGTERM: last.ckpt is saved; started again, this run resumes
        raise KeyboardInterrupt
    (run_dir / "done").write_text("finished\n")
    return run_dir


def run_jobs(calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], jobs: int,
             say: Callable[[str], None] = print) -> None:
    """Call every ``fn(*args)`` of ``calls``, ``jobs`` at a time; their results stay on disk.

    The calls are independent training runs (:func:`train_run`, :func:`supervised_run`), each of
    which returns at once when it finished before. With ``jobs`` > 1 each runs in its own process
    with one thread (``jobs`` such processes share the cores); a run's numbers do not depend on
    what else runs, so they equal those of one call after the other. The first call that fails
    (or is preempted) cancels those not started and is raised once the running ones end.
    """
    names = [Path(str(args[-1])).name for _, args in calls]  # a run's name or a result file's
    if jobs <= 1 or len(calls) <= 1:
        for i, (fn, args) in enumerate(calls):
            say(f"[{i + 1}/{len(calls)}] {names[i]}")
            fn(*args)
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    say(f"{len(calls)} runs, {jobs} at a time")
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)
    try:
        futures = {pool.submit(fn, *args): name for (fn, args), name in zip(calls, names)}
        pending, finished = set(futures), 0
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # raises the run's error (or preemption): the rest is cancelled
                finished += 1
                say(f"[{finished}/{len(calls)}] finished {futures[future]}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def last(run_dir: Path, key: str) -> float:
    """The last value of ``key`` in a run's metrics.csv (nan if it was never logged)."""
    from gan_lightning.runs.folder import series

    values = series(run_dir, key)
    return values[-1] if values else math.nan


def logged_rows(run_dir: Path, key: str) -> list[dict[str, str]]:
    """The rows of a run's metrics.csv in which ``key`` was logged, in order."""
    from gan_lightning.runs.folder import rows

    return [row for row in rows(run_dir) if row.get(key)]


def metric_from(run_dir: Path, key: str, first_step: int) -> list[float]:
    """The values of ``key`` in a run's metrics.csv logged at step ``first_step`` or later."""
    return [float(row[key]) for row in logged_rows(run_dir, key) if int(row["step"]) >= first_step]


def max_per_epoch(run_dir: Path, key: str) -> list[float]:
    """The largest value of ``key`` logged in each epoch of a run (epochs in order, from the first)."""
    most: dict[int, float] = {}
    for row in logged_rows(run_dir, key):
        epoch = int(row["epoch"])
        most[epoch] = max(most.get(epoch, -math.inf), float(row[key]))
    return [most[e] for e in sorted(most)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# -- semi-supervised -------------------------------------------------------------------------------
def semi_supervised(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """K+1 GAN vs supervised-only on the same labels, one pair per seed (the seed also draws the labels).

    Returns:
        The ``semi_supervised`` part of summary.json, plus per-seed errors, test-error curves and
        the largest D loss after the first 50 steps of each seed.
    """
    import json

    from gan_lightning.runs.folder import series

    flags = [*SSL_FLAGS, "--labels_per_class", str(settings.labels_per_class), "--max_epochs",
             str(settings.ssl_epochs), *settings.extra]
    seeds = settings.ssl_seeds
    say(f"semi-supervised: seeds {list(seeds)}, {settings.ssl_epochs} epochs, K+1 GAN and labels only")
    run_jobs([(train_run, ([*flags, "--seed", str(seed)], out_dir, f"ssl-seed{seed}")) for seed in seeds]
             + [(supervised_run, ([*flags, "--seed", str(seed)], out_dir / f"supervised-seed{seed}.json"))
                for seed in seeds], settings.jobs, say)
    ssl, ssl_live, curves, d_loss_max, d_loss_curves, baselines = [], [], {}, [], {}, []
    for seed in seeds:
        run_dir = train_run([*flags, "--seed", str(seed)], out_dir, f"ssl-seed{seed}")
        ssl.append(last(run_dir, "ssl/test_error"))
        ssl_live.append(last(run_dir, "ssl/test_error_live"))
        curves[seed] = series(run_dir, "ssl/test_error")
        d_loss_max.append(max(metric_from(run_dir, "loss/d", SSL_SETTLE_STEPS), default=math.nan))
        d_loss_curves[str(seed)] = max_per_epoch(run_dir, "loss/d")
        baseline = out_dir / f"supervised-seed{seed}.json"
        supervised_run([*flags, "--seed", str(seed)], baseline)
        baselines.append(json.loads(baseline.read_text()))
    supervised = [b["test_error"] for b in baselines]
    (ssl_mean, ssl_std), (sup_mean, sup_std) = mean_std(ssl), mean_std(supervised)
    gains = [b - k for k, b in zip(ssl, supervised)]
    return {
        "dataset": "mnist5k", "labels": 10 * settings.labels_per_class, "test_size": baselines[0]["test_size"],
        "unlabeled": baselines[0]["unlabeled"], "epochs": settings.ssl_epochs, "steps": baselines[0]["steps"],
        "test_error": ssl_mean, "test_error_std": ssl_std,
        "supervised_only_error": sup_mean, "supervised_only_error_std": sup_std,
        "gain": mean_std(gains)[0], "gain_per_seed": gains,
        "seeds": list(seeds), "test_error_per_seed": ssl, "supervised_only_per_seed": supervised,
        # the same with the live weights (the EMA can average across a late jump of the weights)
        "test_error_live_per_seed": ssl_live,
        "supervised_only_live_per_seed": [b["test_error_live"] for b in baselines],
        f"d_loss_max_after_{SSL_SETTLE_STEPS}_steps_per_seed": d_loss_max,
        "flags": " ".join(SSL_FLAGS),
        "curves": {str(k): v for k, v in curves.items()},
        "d_loss_max_per_epoch": d_loss_curves,
    }


def supervised_run(flags: Sequence[str], path: Path) -> Path:
    """The labels-only control of one K+1 run (``flags`` as for train.py): the same D, seed, number
    of D steps, Adam settings and EMA, trained on the labeled batches alone; writes its test errors
    (EMA and live weights) to ``path`` (JSON) and returns it. A finished ``path`` is kept."""
    if path.is_file():
        return path
    import json

    import lightning as L

    from gan_lightning.build import build_datamodule, build_networks
    from gan_lightning.config import parse_args, resolve
    from gan_lightning.experiments.ssl_baseline import classifier_error, supervised_baseline

    cfg = resolve(parse_args(list(flags))[0])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    steps = cfg.max_epochs * (len(dm.unlabeled_dataset) // cfg.batch_size)
    L.seed_everything(cfg.seed, verbose=False)
    d = build_networks(cfg, dm.data_shape)[1]
    error = supervised_baseline(d, dm, steps, lr=cfg.lr_d, beta1=cfg.beta1, beta2=cfg.beta2, adam_eps=cfg.adam_eps,
                                ema_decay=cfg.ema_decay, lr_decay_steps=cfg.lr_decay_steps)
    result = {"test_error": error, "test_error_live": classifier_error(d, dm.val_dataloader()), "steps": steps,
              "labels": len(dm.labeled_dataset), "unlabeled": len(dm.unlabeled_dataset),
              "test_size": len(dm.dataset("test"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)
    return path


# -- mode coverage ---------------------------------------------------------------------------------
def mode_coverage(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """ring and grid: modes covered and high-quality fraction, baseline vs minibatch discrimination.

    Returns:
        {dataset: {variant: {modes, modes_std, high_quality, high_quality_std, modes_per_seed,
        high_quality_per_seed, runs, seeds, curves, g_steps, flags}}}. ``curves`` maps each seed to its
        (G step, modes covered, high-quality fraction) evaluations, to tell a converged partial
        collapse (sharp samples, modes missing for good) from under-training (blurred samples).
    """
    from gan_lightning.metrics.keys import metric_key

    modes_key, quality_key = metric_key("modes_covered", 2500), metric_key("high_quality", 2500)
    mbd = ("--minibatch_discrimination", "--mbd_kernels", str(settings.coverage_mbd_kernels),
           "--mbd_dim", str(settings.coverage_mbd_dim))
    every = ("--metric_every_n_epochs", str(settings.coverage_metric_every_n_epochs),
             "--sample_every_n_epochs", str(settings.coverage_sample_every_n_epochs))
    variants = (("baseline", ()), ("minibatch_discrimination", mbd))

    def flags(dataset: str, extra: Sequence[str], seed: int) -> list[str]:
        return [*COVERAGE_FLAGS, "--dataset", dataset, *extra, "--seed", str(seed),
                "--max_steps", str(settings.coverage_steps), *every, *settings.extra]

    say(f"mode coverage: ring and grid, baseline and MBD, seeds {list(settings.coverage_seeds)}, "
        f"{settings.coverage_steps} G steps")
    run_jobs([(train_run, (flags(dataset, extra, seed), out_dir, f"{dataset}-{variant}-seed{seed}"))
              for dataset in ("ring", "grid") for variant, extra in variants for seed in settings.coverage_seeds],
             settings.jobs, say)
    out: dict[str, Any] = {}
    for dataset in ("ring", "grid"):
        out[dataset] = {}
        for variant, extra in variants:
            modes, quality, runs, curves = [], [], [], {}
            for seed in settings.coverage_seeds:
                run_dir = train_run(flags(dataset, extra, seed), out_dir, f"{dataset}-{variant}-seed{seed}")
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
    rows = logged_rows(run_dir, modes_key)
    return {"step": [int(row["step"]) + 1 for row in rows],  # the logged step counts from 0
            "modes": [float(row[modes_key]) for row in rows],
            "high_quality": [float(row[quality_key]) for row in rows]}


# -- ablation ----------------------------------------------------------------------------------------
def ablation(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """DCGAN on mnist5k, the paper's Table 3 design: FID and IS (LeNet features) over seeds.

    Returns:
        One row per variant of :data:`ABLATION` (those of ``settings.ablation_variants``, or all):
        mean and std over seeds of the final FID and IS, the per-seed values, each seed's FID
        curve (epoch, FID), and D's accuracy over the last epoch of each seed (1.0: D wins outright).
    """
    from gan_lightning.metrics.keys import metric_key

    n, epochs = settings.ablation_samples, settings.ablation_epochs
    every = max(1, epochs // settings.ablation_evaluations)
    variants = [(name, extra) for name, extra in ABLATION
                if not settings.ablation_variants or name in settings.ablation_variants]

    def flags(extra: Sequence[str], seed: int) -> list[str]:
        return [*ABLATION_FLAGS, *extra, "--seed", str(seed), "--max_epochs", str(epochs), "--metric_every_n_epochs",
                str(every), "--metric_num_samples", str(n), *settings.extra]

    def name_of(variant: str, seed: int) -> str:
        return f"ablation-{variant.replace(' ', '_').replace('+', 'plus')}-seed{seed}"

    say(f"ablation: {len(variants)} variants x seeds {list(settings.ablation_seeds)}, {epochs} epochs")
    run_jobs([(train_run, (flags(extra, seed), out_dir, name_of(name, seed)))
              for name, extra in variants for seed in settings.ablation_seeds], settings.jobs, say)
    fid_key, is_key = metric_key("fid", n, "lenet"), metric_key("is_mean", n, "lenet")
    rows = []
    for name, extra in variants:
        fids, iss, accs, curves, runs = [], [], [], {}, []
        for seed in settings.ablation_seeds:
            run_dir = train_run(flags(extra, seed), out_dir, name_of(name, seed))
            fids.append(last(run_dir, fid_key))
            iss.append(last(run_dir, is_key))
            acc = metric_from(run_dir, "d/acc", 0)
            batches = max(1, len(acc) // epochs)  # the logged values of the last epoch
            accs.append(statistics.fmean(acc[-batches:]) if acc else math.nan)
            curves[str(seed)] = read_metric_by_epoch(run_dir, fid_key)
            runs.append(str(run_dir))
        (fid, fid_std), (is_mean, is_std) = mean_std(fids), mean_std(iss)
        rows.append({"techniques": name, "flags": " ".join(extra), "fid": fid, "fid_std": fid_std,
                     "is_mean": is_mean, "is_mean_std": is_std, "seeds": list(settings.ablation_seeds),
                     "fid_per_seed": fids, "is_mean_per_seed": iss, "d_acc_last_epoch_per_seed": accs,
                     "fid_curves": curves, "epochs": epochs, "run": runs[-1], "runs": runs})
    return rows


def read_metric_by_epoch(run_dir: Path, key: str) -> dict[str, list[float]]:
    """{"epoch": [...], "value": [...]}: the epochs (counted from 1) at which a run logged ``key``."""
    rows = logged_rows(run_dir, key)
    return {"epoch": [int(row["epoch"]) + 1 for row in rows], "value": [float(row[key]) for row in rows]}


STUDIES: dict[str, Callable[[Settings, Path, Callable[[str], None]], Any]] = {
    "semi_supervised": semi_supervised,
    "mode_coverage": mode_coverage,
    "ablation": ablation,
}
