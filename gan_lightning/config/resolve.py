"""From the config a user gave (``auto`` values allowed) to the config a run uses.

:func:`resolve` is the one place where ``auto`` and other "work it out" values get their value:
the run calls it once, right after its folder is chosen, and everything after it (validation,
the builders, ``config.yaml``, ``--dry_run``, checkpoints) sees only resolved values. Resolving a
resolved config changes nothing, so ``auto`` stays accepted on the command line, in YAML files,
in sweeps and on resume.
"""

from __future__ import annotations

import dataclasses

from gan_lightning.config.flags import TrainConfig, check_name

AUTO = "auto"
NO_EXTRACTOR = "none"  # --metric_extractor of 2-D point data: mode coverage needs no feature extractor
RESOLVED = ("arch", "d_norm", "g_objective", "label_seed", "metric_extractor", "metric_split", "metric_num_samples",
            "roth_final_gamma")


def resolve(cfg: TrainConfig) -> TrainConfig:
    """A copy of ``cfg`` with every value that depends on others filled in (see RESOLVED).

    - ``arch`` auto: dcgan for images, mlp for 2-D points;
    - ``d_norm`` auto: batch for dcgan, none otherwise and with ``d_spectral_norm`` (a norm layer would cancel it);
    - ``g_objective`` auto: feature_matching for the semi-supervised task, else adversarial;
    - ``label_seed`` -1: the run's ``seed``;
    - ``metric_extractor`` auto: lenet-mnist for digits, inception for other images, none for points;
    - ``metric_split`` empty: test (train for ``folder``, which has no test split);
    - ``metric_num_samples`` 0: 5,000 images or 2,500 points;
    - ``roth_final_gamma`` -1: 0.01 * ``roth_gamma`` (Roth et al. 2017's gamma_0 * 0.01^(t/T)).

    Raises:
        UsageError: an unknown data set or arch (what resolving looks up).
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
    )


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
             "metric_split": "", "metric_num_samples": 0, "roth_final_gamma": -1.0}
    return [k for k in RESOLVED if getattr(cfg, k) == blank[k]]
