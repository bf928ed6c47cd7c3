"""From the config a user gave (``auto`` values allowed) to the config a run uses.

:func:`resolve` is the one place where ``auto`` and other "work it out" values get their value:
the run calls it once, right after its folder is chosen, and everything after it (validation,
the builders, ``config.yaml``, ``--dry_run``, checkpoints) sees only resolved values. Resolving a
resolved config changes nothing, so ``auto`` stays accepted on the command line, in YAML files,
in sweeps and on resume.
"""

from __future__ import annotations

import dataclasses
import functools

from gan_lightning.config.flags import TrainConfig, check_name
from gan_lightning.errors import DataError, UsageError

AUTO = "auto"
NO_EXTRACTOR = "none"  # --metric_extractor of 2-D point data: mode coverage needs no feature extractor
RESOLVED = ("arch", "d_norm", "g_objective", "label_seed", "metric_extractor", "metric_split", "metric_num_samples",
            "roth_final_gamma", "noise_anneal_steps", "roth_anneal_steps")
WHOLE_RUN = -1  # --noise_anneal_steps / --roth_anneal_steps: anneal over the run's G steps


def resolve(cfg: TrainConfig) -> TrainConfig:
    """A copy of ``cfg`` with every value that depends on others filled in (see RESOLVED).

    - ``arch`` auto: dcgan for images, mlp for 2-D points;
    - ``d_norm`` auto: batch for dcgan, none otherwise and with ``d_spectral_norm`` (a norm layer would cancel it);
    - ``g_objective`` auto: feature_matching for the semi-supervised task, else adversarial;
    - ``label_seed`` -1: the run's ``seed``;
    - ``metric_extractor`` auto: lenet-mnist for digits, inception for other images, none for points;
    - ``metric_split`` empty: test (train for ``folder``, which has no test split);
    - ``metric_num_samples`` 0: 5,000 images or 2,500 points;
    - ``roth_final_gamma`` -1: 0.01 * ``roth_gamma`` (Roth et al. 2017's gamma_0 * 0.01^(t/T));
    - ``noise_anneal_steps`` and ``roth_anneal_steps`` -1: the run's G steps (:func:`run_g_steps`),
      where that annealing is on (an annealed noise schedule; ``roth_gamma`` > 0 with a schedule
      other than constant); left at -1 where it is off, so a resume that turns it on gets its own run's length.

    Raises:
        UsageError: an unknown data set or arch (what resolving looks up); a run's length that needs
            the size of a data set that is not there.
    """
    from gan_lightning.core.penalties import ROTH_FINAL_FACTOR
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.metrics.extractors import default_extractor
    from gan_lightning.metrics.keys import default_num_samples, default_split
    from gan_lightning.networks import NETWORKS

    check_name("dataset", cfg.dataset, list(DATASETS))
    check_name("arch", cfg.arch, [AUTO, *NETWORKS])
    kind = DATASETS[cfg.dataset].kind
    arch = cfg.arch if cfg.arch != AUTO else ("mlp" if kind == "points" else "dcgan")
    extractor = cfg.metric_extractor
    if extractor == AUTO:
        extractor = default_extractor(cfg.dataset, kind) or NO_EXTRACTOR
    return dataclasses.replace(
        cfg,
        arch=arch,
        d_norm=(cfg.d_norm if cfg.d_norm != AUTO
                else "batch" if arch == "dcgan" and not cfg.d_spectral_norm else "none"),
        g_objective=(cfg.g_objective if cfg.g_objective != AUTO
                     else "feature_matching" if cfg.task == "semi_supervised" else "adversarial"),
        label_seed=cfg.seed if cfg.label_seed < 0 else cfg.label_seed,
        metric_extractor=extractor,
        metric_split=cfg.metric_split or default_split(cfg.dataset),
        metric_num_samples=cfg.metric_num_samples or default_num_samples(kind),
        roth_final_gamma=ROTH_FINAL_FACTOR * cfg.roth_gamma if cfg.roth_final_gamma == -1 else cfg.roth_final_gamma,
        noise_anneal_steps=_anneal_steps(cfg, "noise_anneal_steps", noise_annealed(cfg)),
        roth_anneal_steps=_anneal_steps(cfg, "roth_anneal_steps", roth_annealed(cfg)),
    )


def _annealed(schedule: str) -> bool:
    from gan_lightning.core.noise import SCHEDULES

    return hasattr(SCHEDULES.get(schedule), "anneal_steps")  # linear, exponential, cosine, step


def noise_annealed(cfg: TrainConfig) -> bool:
    """Whether instance noise is on with a schedule that moves over ``noise_anneal_steps``."""
    return noise_enabled(cfg) and _annealed(cfg.noise_schedule)


def roth_annealed(cfg: TrainConfig) -> bool:
    """Whether Roth et al.'s gamma is on and annealed over ``roth_anneal_steps``."""
    return cfg.roth_gamma > 0 and _annealed(cfg.roth_schedule)


def _anneal_steps(cfg: TrainConfig, key: str, used: bool) -> int:
    value = getattr(cfg, key)
    if value != WHOLE_RUN or not used:
        return value
    try:
        steps = run_g_steps(cfg)
    except DataError:
        if not cfg.download:
            raise  # the run itself would stop on the same line
        raise UsageError(f"--{key} -1 (the whole run) needs the batches per epoch of --dataset {cfg.dataset}, "
                         f"which is not downloaded yet; give --{key} N or --max_steps N, or download it "
                         f"first") from None
    return steps if steps > 0 else value  # no limit at all: validation refuses the run


def run_g_steps(cfg: TrainConfig) -> int:
    """The G steps a run of ``cfg`` trains in all (from G step 0; a resumed run included): ``max_steps``,
    or ``max_epochs`` x batches per epoch where that is fewer; -1 without either limit.

    A GAN batch makes one G step (its ``n_critic`` D steps come from the same batch). Batches per
    epoch: the training split's examples per process (DDP splits them), in full batches (the loader
    drops a partial last one). Loads the training split (not downloading it) when ``max_epochs`` bounds the run.

    Raises:
        DataError: the training split is needed and cannot be read.
    """
    by_epochs = -1
    if cfg.max_epochs > 0:
        per_process = -(-_train_size(cfg.dataset, cfg.image_size, cfg.data_root) // _processes(cfg))
        by_epochs = cfg.max_epochs * max(1, per_process // cfg.batch_size)
    if cfg.max_steps > 0 and (by_epochs < 0 or cfg.max_steps < by_epochs):
        return cfg.max_steps
    return by_epochs


@functools.lru_cache(maxsize=8)
def _train_size(dataset: str, image_size: int, data_root: str) -> int:
    from gan_lightning.data.datasets import DATASETS

    return len(DATASETS[dataset].load("train", image_size, data_root, False))  # type: ignore[arg-type]


def _processes(cfg: TrainConfig) -> int:
    """Training processes: devices per node (``auto``: every visible GPU when CUDA is used, else 1) x nodes."""
    parts = [p.strip() for p in cfg.devices.split(",") if p.strip()]
    if cfg.devices != "auto":  # validation refuses what is not a number or a list of them
        count = len(parts) if len(parts) > 1 else int(parts[0]) if parts and parts[0].isdigit() else 1
    elif cfg.accelerator in ("auto", "gpu", "cuda"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 1
    else:
        count = 1
    return max(1, count) * max(1, cfg.num_nodes)


def noise_enabled(cfg: TrainConfig) -> bool:
    """Whether D's inputs get instance noise: a schedule other than none, and a sigma or the adaptive one."""
    return cfg.noise_schedule != "none" and (cfg.noise_std > 0 or cfg.noise_schedule == "adaptive")


def num_outputs(cfg: TrainConfig) -> int:
    """D's logits: 1 for a GAN, K class logits for the semi-supervised K+1 discriminator."""
    from gan_lightning.data.datasets import DATASETS

    return DATASETS[cfg.dataset].num_classes if cfg.task == "semi_supervised" else 1


def unresolved(cfg: TrainConfig) -> list[str]:
    """The RESOLVED fields of ``cfg`` that still hold a "work it out" value (empty for a resolved config)."""
    blank = {"arch": AUTO, "d_norm": AUTO, "g_objective": AUTO, "label_seed": -1, "metric_extractor": AUTO,
             "metric_split": "", "metric_num_samples": 0, "roth_final_gamma": -1.0,
             "noise_anneal_steps": WHOLE_RUN if noise_annealed(cfg) else None,
             "roth_anneal_steps": WHOLE_RUN if roth_annealed(cfg) else None}
    return [k for k in RESOLVED if getattr(cfg, k) == blank[k]]
