"""Checks of a resolved TrainConfig: every value a user can get wrong gets one line saying what is right."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping

from gan_lightning.config.flags import ACCELERATORS, LOGGERS, LOSS_ALIASES, PRECISIONS, REMEDIES, X_AXES, check_name
from gan_lightning.config.resolve import ResolvedConfig
from gan_lightning.errors import NotApplicable, UsageError

# Sizes above these are typing mistakes that would exhaust memory or processes before any message.
SIZE_LIMITS: dict[str, int] = {"n_critic": 1000, "probe_d_iters": 10_000_000, "batch_size": 1 << 16, "image_size": 1024, "z_dim": 1 << 16, "g_width": 1 << 14,
                               "d_width": 1 << 14, "mbd_kernels": 4096, "mbd_dim": 1024, "vbn_ref_size": 1 << 16,
                               "num_workers": 256, "num_nodes": 1 << 14, "metric_num_samples": 1_000_000,
                               "metric_kid_subset_size": 1_000_000}
SEED_MAX = 2**32 - 1  # numpy's seed range; Lightning replaces a seed outside it by 0 with only a warning


def validate(cfg: ResolvedConfig, given: Collection[str] | None = None) -> None:
    """Check every value a user can get wrong, on the resolved config (:func:`~gan_lightning.config.resolve`
    has checked the names it looks up, dataset and arch, and filled in the ``auto`` values).

    Args:
        cfg: the resolved config.
        given: the keys the user set (:class:`~gan_lightning.config.parse.Given`): a message about a
            key that a ``--remedy`` preset or loss alias set names that flag.

    Raises:
        UsageError: one line saying what is right.
    """
    from gan_lightning.config.resolve import AUTO, NO_EXTRACTOR, WHOLE_RUN, noise_enabled

    # A name a user may give as "auto" (or empty) is checked with auto among the valid values: a resolved
    # value that is not the given one is valid, so the given one is what a message names.
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.core.losses import LOSSES
    from gan_lightning.networks import NETWORKS

    check_name("dataset", cfg.dataset, list(DATASETS))
    check_name("arch", cfg.arch, list(NETWORKS))
    check_name("loss", cfg.loss, [*LOSSES, *LOSS_ALIASES])
    check_name("remedy", cfg.remedy, list(REMEDIES))
    check_name("logger", cfg.logger, LOGGERS)
    check_name("x_axis", cfg.x_axis, X_AXES)
    check_name("precision", cfg.precision, PRECISIONS)
    check_name("accelerator", cfg.accelerator, ACCELERATORS)
    for key in ("batch_size", "image_size", "z_dim", "g_width", "d_width", "n_critic", "num_nodes", "labels_per_class",
                "log_every_n_steps", "mbd_kernels", "mbd_dim", "vbn_ref_size", "probe_d_iters",
                "metric_kid_subset_size"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"--{key}: must be >= 1, got {getattr(cfg, key)}")
    for key, most in SIZE_LIMITS.items():
        if getattr(cfg, key) > most:
            raise UsageError(f"--{key}: must be <= {most:,}, got {getattr(cfg, key):,}")
    if not 0 <= cfg.seed <= SEED_MAX or not -1 <= cfg.label_seed <= SEED_MAX:
        raise UsageError(f"--seed and --label_seed: must be in [0, {SEED_MAX}] (--label_seed also -1), "
                         f"got {cfg.seed} and {cfg.label_seed}")
    for key in ("lr_g", "lr_d"):
        if not getattr(cfg, key) > 0:
            raise UsageError(f"--{key}: must be > 0, got {getattr(cfg, key)}")
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, key) < 1:
            raise UsageError(f"--{key}: must be in [0, 1), got {getattr(cfg, key)}")
    if not 0 < cfg.adam_eps <= 1:
        raise UsageError(f"--adam_eps: must be in (0, 1], got {cfg.adam_eps}")
    for key in ("gp_weight", "weight_clip", "num_workers", "sample_every_n_epochs", "noise_std", "noise_final_std",
                "shadow_every_n_steps", "historical_averaging", "probe_every_n_epochs",
                "metric_every_n_epochs", "metric_num_samples", "unsup_weight", "lr_decay_steps"):
        if getattr(cfg, key) < 0:
            raise UsageError(f"--{key}: must be >= 0, got {getattr(cfg, key)}")
    if cfg.max_epochs == 0 or cfg.max_epochs < -1 or cfg.max_steps == 0 or cfg.max_steps < -1:
        raise UsageError("--max_epochs and --max_steps must be >= 1, or -1 for no limit")
    if cfg.max_epochs == -1 and cfg.max_steps == -1:
        raise UsageError("--max_epochs=-1 needs a --max_steps limit")
    device_ids = [p.strip() for p in cfg.devices.split(",") if p.strip()]
    if cfg.devices != "auto" and not (device_ids and all(p.isdigit() and int(p) < 1 << 16 for p in device_ids)):
        raise UsageError(f"--devices: expected a number, a list like 0,1 or auto, got {cfg.devices!r}")
    if cfg.run_name and (Path(cfg.run_name).name != cfg.run_name or cfg.run_name in (".", "..")):
        raise UsageError(f"--run_name: must be a plain folder name, got {cfg.run_name!r}")

    from gan_lightning.core.losses import d_bce_loss
    from gan_lightning.core.noise import SCHEDULES
    from gan_lightning.core.objectives import FM_DISTANCES

    check_name("g_objective", cfg.g_objective, [AUTO, "adversarial", "feature_matching"])
    check_name("on_nonfinite", cfg.on_nonfinite, ["stop", "skip"])
    if not 0 <= cfg.g_ema < 1:  # NaN fails too
        raise UsageError(f"--g_ema: must be in [0, 1) (0: off; 0.999 is usual), got {cfg.g_ema}")
    from gan_lightning.metrics.extractors import EXTRACTORS
    from gan_lightning.metrics.keys import parse_metrics

    points = cfg.data_kind == "points"
    check_name("metric_extractor", cfg.metric_extractor, [AUTO, NO_EXTRACTOR] if points else [AUTO, *EXTRACTORS])
    check_name("metric_split", cfg.metric_split, ["train", "test"])
    try:
        parse_metrics(cfg.metrics)
    except UsageError as e:
        raise UsageError(f"--metrics: {e}") from None
    check_name("fm_distance", cfg.fm_distance, list(FM_DISTANCES))
    if not 0 < cfg.label_smoothing <= 1:
        raise UsageError(f"--label_smoothing: must be in (0, 1] (1.0: off), got {cfg.label_smoothing}")
    if cfg.label_smoothing != 1.0 and LOSSES[cfg.loss].d is not d_bce_loss:
        raise UsageError(f"--label_smoothing needs a BCE loss (minimax or nonsaturating), not --loss {cfg.loss}")
    if cfg.fm_layer and cfg.g_objective != "feature_matching":
        raise UsageError("--fm_layer only applies with --g_objective feature_matching")

    check_name("noise_schedule", cfg.noise_schedule, ["none", *SCHEDULES])
    from gan_lightning.core.noise import make_schedule

    if cfg.noise_anneal_steps < 1 and cfg.noise_anneal_steps != WHOLE_RUN:
        raise UsageError(f"--noise_anneal_steps: must be >= 1, or -1 for the whole run, got {cfg.noise_anneal_steps}")
    try:
        if noise_enabled(cfg):
            make_schedule(cfg.noise_schedule, cfg.noise_std, cfg.noise_final_std, cfg.noise_anneal_steps,
                          cfg.noise_target_acc)
    except ValueError as e:
        raise UsageError(f"instance noise: {e}") from None
    implied: Mapping[str, str] = getattr(given, "implied", {})
    _validate_regularizers(cfg, implied)

    arch_name = cfg.arch
    arch = NETWORKS[arch_name]
    if cfg.data_kind == "points" and arch.image_sizes is not None:
        raise UsageError(f"--arch {arch_name} needs image data; dataset {cfg.dataset!r} is 2-D points: use --arch mlp")
    if cfg.data_kind == "images" and arch.image_sizes is not None and cfg.image_size not in arch.image_sizes:
        sizes = ", ".join(map(str, arch.image_sizes))
        raise UsageError(f"--image_size {cfg.image_size} is not supported by --arch {arch_name}; use one of {sizes}")
    check_name("g_norm", cfg.g_norm, arch.g_norms)
    check_name("d_norm", cfg.d_norm, [AUTO, *arch.d_norms])
    from gan_lightning.config.flags import flag_text

    sn = flag_text("d_spectral_norm", True, implied)
    if cfg.d_spectral_norm and not arch.d_spectral_norm:
        raise UsageError(f"{sn}: the {arch_name} discriminator's weights are weight-normalized "
                         f"already; use --arch dcgan or mlp")
    if cfg.d_spectral_norm and cfg.d_norm != "none":
        # layers/spectral_norm.py: a batch or layer norm gives the same output for W x and W x / sigma.
        raise UsageError(f"{sn} with --d_norm {cfg.d_norm}: that norm layer would cancel the spectral "
                         f"norm of the layer before it; use --d_norm none (auto is none with --d_spectral_norm)")
    _validate_task(cfg, implied)
    if cfg.channels_last and cfg.data_kind != "images":
        raise UsageError(f"--channels_last is a memory format of images; dataset {cfg.dataset!r} is 2-D points")
    if cfg.logger == "tensorboard":
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
            raise UsageError("--logger tensorboard needs the tensorboard package: pip install tensorboard")
    if cfg.resume and cfg.resume != "last" and not Path(cfg.resume).is_file():
        raise UsageError(f"--resume: no checkpoint file at {cfg.resume} (give a .ckpt path or 'last')")
    if cfg.config and not Path(cfg.config).is_file():
        raise UsageError(f"--config: no such file {cfg.config}")


def _value(value: Any) -> str:
    """A value as a user types it: ``0`` for 0.0, ``false`` for False."""
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _validate_regularizers(cfg: ResolvedConfig, implied: Mapping[str, str]) -> None:
    """R1, R2 (and their --reg_every), Roth et al.'s regularizer with its annealing, and --remedy.

    ``implied``: the keys a preset or loss alias set, with the flag that set them (Given.implied).
    """
    import math

    from gan_lightning.config.flags import flag_text
    from gan_lightning.config.resolve import WHOLE_RUN, noise_enabled

    on = {"none": True, "noise": noise_enabled(cfg), "r1": cfg.r1_weight > 0, "roth": cfg.roth_gamma > 0,
          "sn": cfg.d_spectral_norm, "wgan_gp": cfg.gp_weight > 0}
    if not on[cfg.remedy]:
        settings = REMEDIES[cfg.remedy]
        preset = " ".join(f"--{k} {v}" for k, v in settings.items())
        changed = " ".join(f"--{k} {_value(getattr(cfg, k))}" for k, v in settings.items() if getattr(cfg, k) != v)
        raise UsageError(f"--remedy {cfg.remedy} (= {preset}) is turned off by a flag given with it ({changed}); "
                         "drop that flag, or the remedy")

    from gan_lightning.core.losses import LOSSES, d_bce_loss
    from gan_lightning.core.penalties import GAMMA_SCHEDULES, RothRegularizer

    for key in ("r1_weight", "r2_weight", "roth_gamma"):
        if not (math.isfinite(getattr(cfg, key)) and getattr(cfg, key) >= 0):
            raise UsageError(f"--{key}: must be a finite number >= 0 (0: off), got {getattr(cfg, key)}")
    if cfg.reg_every < 1:
        raise UsageError(f"--reg_every: must be >= 1 (1: every D step), got {cfg.reg_every}")
    check_name("roth_schedule", cfg.roth_schedule, GAMMA_SCHEDULES)
    if not (math.isfinite(cfg.roth_final_gamma) and cfg.roth_final_gamma >= 0):
        raise UsageError(f"--roth_final_gamma: must be a finite number >= 0, or -1 for 0.01 * --roth_gamma, "
                         f"got {cfg.roth_final_gamma}")
    if cfg.roth_anneal_steps < 1 and cfg.roth_anneal_steps != WHOLE_RUN:
        raise UsageError(f"--roth_anneal_steps: must be >= 1, or -1 for the whole run, got {cfg.roth_anneal_steps}")
    double = [flag_text(k, getattr(cfg, k), implied)
              for k in ("gp_weight", "r1_weight", "r2_weight", "roth_gamma") if getattr(cfg, k) > 0]
    if cfg.compile and double:
        raise UsageError(f"--compile with {double[0]}: that penalty differentiates D's input gradient (a double "
                         "backward), which torch.compile does not support; drop --compile or the penalty")
    if cfg.remedy == "roth" and LOSSES[cfg.loss].d is not d_bce_loss:
        raise NotApplicable(f"--remedy roth does not apply to --loss {cfg.loss}: Roth et al.'s regularizer is "
                            "derived for the BCE losses (minimax, nonsaturating)")
    if cfg.roth_gamma > 0 and LOSSES[cfg.loss].d is not d_bce_loss:
        raise UsageError(f"--roth_gamma needs a BCE loss (minimax or nonsaturating), not --loss {cfg.loss}; "
                         "--r1_weight works with any loss")
    try:
        if cfg.roth_gamma > 0:
            RothRegularizer.annealed(cfg.roth_schedule, cfg.roth_gamma, cfg.roth_final_gamma, cfg.roth_anneal_steps)
    except ValueError as e:
        raise UsageError(f"--roth_schedule {cfg.roth_schedule}: {e}") from None


# Options of the GAN loop that the semi-supervised loop does not have: their "off" values.
SSL_UNUSED: dict[str, Any] = {"n_critic": 1, "gp_weight": 0.0, "weight_clip": 0.0, "label_smoothing": 1.0,
                              "historical_averaging": 0.0, "probe_every_n_epochs": 0, "r1_weight": 0.0,
                              "r2_weight": 0.0, "reg_every": 1, "roth_gamma": 0.0}


def _validate_task(cfg: ResolvedConfig, implied: Mapping[str, str]) -> None:
    from gan_lightning.config.flags import TASKS
    from gan_lightning.config.flags import flag_text
    from gan_lightning.config.resolve import noise_enabled
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.data.semi_supervised import UNLABELED_CHOICES

    check_name("task", cfg.task, list(TASKS))
    check_name("unlabeled", cfg.unlabeled, UNLABELED_CHOICES)
    if not 0 <= cfg.ema_decay < 1:
        raise UsageError(f"--ema_decay: must be in [0, 1) (0: off), got {cfg.ema_decay}")
    if cfg.task != "semi_supervised":
        return
    if DATASETS[cfg.dataset].num_classes < 2:
        labeled = ", ".join(k for k, v in DATASETS.items() if v.num_classes >= 2)
        raise UsageError(f"--task semi_supervised needs a data set with class labels ({labeled}), "
                         f"not --dataset {cfg.dataset}")
    for key, off in SSL_UNUSED.items():
        if getattr(cfg, key) != off:
            raise UsageError(f"{flag_text(key, getattr(cfg, key), implied)} is not part of --task semi_supervised "
                             f"(its D loss is the K+1 loss); "
                             + (f"drop {implied[key]}" if key in implied else f"leave it at {off}"))
    if noise_enabled(cfg):
        what = f"{implied['noise_std']} (instance noise)" if "noise_std" in implied else "instance noise (--noise_std)"
        raise UsageError(f"{what} is not part of --task semi_supervised; " + (
            f"drop {implied['noise_std']}" if "noise_std" in implied else "leave --noise_std at 0"))




def notices(cfg: ResolvedConfig, given: Collection[str] = ()) -> list[str]:
    """One line each for settings that are valid but probably not what was meant, of a resolved config.

    - ``--metric_live_g`` without ``--g_ema``: there is no average, the live G is scored anyway;
    - an anneal length given explicitly (``--noise_anneal_steps``, ``--roth_anneal_steps``) longer
      than the run: the annealing stops half-way (-1, the default, anneals over the whole run).

    Args:
        cfg: the resolved config.
        given: the keys the user gave; only an anneal length given is reported.
    """
    from gan_lightning.config.resolve import noise_annealed, roth_annealed, run_g_steps
    from gan_lightning.core.noise import make_schedule
    from gan_lightning.errors import DataError

    lines = []
    if cfg.metric_live_g and cfg.g_ema == 0:
        lines.append("notice: --metric_live_g has no effect without --g_ema (there is no average of G: the metrics "
                     "score the live G under the plain keys anyway)")
    annealed = {"noise_anneal_steps": ("sigma", "noise_std", "noise_final_std", "noise_schedule", noise_annealed(cfg)),
                "roth_anneal_steps": ("Roth's gamma", "roth_gamma", "roth_final_gamma", "roth_schedule",
                                      roth_annealed(cfg))}
    for key, (what, start, final, schedule, on) in annealed.items():
        if not on or key not in given:
            continue
        try:
            total = run_g_steps(cfg)
        except DataError:
            continue  # the run stops on that itself
        steps = getattr(cfg, key)
        if 0 < total < steps:
            curve = make_schedule(getattr(cfg, schedule), getattr(cfg, start), getattr(cfg, final), steps, 0.5)
            reached = curve(total, getattr(cfg, start))
            lines.append(f"notice: --{key} {steps} is longer than the run ({total} G steps): {what} ends at "
                         f"{reached:.3g}, not at {getattr(cfg, final):g}; --{key} -1 anneals over the whole run")
    return lines
