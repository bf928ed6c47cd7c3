"""Every object a run is made of, built from a :class:`~gan_lightning.config.ResolvedConfig`: data module,
networks, instance noise, the LightningModule, the probe's D, callbacks, loggers and the Trainer.

Builders only build: they take the config :func:`gan_lightning.config.resolve` made (every ``auto``
worked out, the hardware's included), and ``config.validate`` has checked the names, so a lookup here
does not fail on a user's typo.

May import anything in the package except ``runs`` (which builds with it) and ``experiments``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from gan_lightning.config import ResolvedConfig, noise_enabled
from gan_lightning.config.resolve import DDP_GAN, SINGLE_DEVICE
from gan_lightning.diagnostics.probe_recipe import PROBE_NORM
from gan_lightning.errors import UsageError


def build_datamodule(cfg: ResolvedConfig):
    """The LightningDataModule of ``cfg.dataset``: labeled + unlabeled batches for the semi-supervised task;
    image batches in channels-last format with ``--channels_last``."""
    from gan_lightning.data.datasets import DATASETS, GANDataModule

    common = dict(image_size=cfg.image_size, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                  data_root=cfg.data_root, download=cfg.download)
    if cfg.task == "semi_supervised":
        from gan_lightning.data.semi_supervised import SemiSupervisedDataModule

        dm = SemiSupervisedDataModule(
            DATASETS[cfg.dataset], cfg.labels_per_class, seed=cfg.label_seed, shuffle_seed=cfg.seed,
            unlabeled=cfg.unlabeled, **common
        )
    else:
        dm = GANDataModule(DATASETS[cfg.dataset], seed=cfg.seed, **common)
    if cfg.channels_last:
        import torch

        dm.memory_format = torch.channels_last
    return dm


def build_networks(cfg: ResolvedConfig, data_shape: tuple[int, ...]):
    """(generator, discriminator) for ``cfg.arch``, the data's shape and the task's number of D outputs;
    D with minibatch discrimination and spectral norm when their flags say so."""
    from gan_lightning.networks import NETWORKS

    arch = NETWORKS[cfg.arch]
    g = arch.generator(z_dim=cfg.z_dim, data_shape=data_shape, width=cfg.g_width, norm=cfg.g_norm,
                       vbn_ref_size=cfg.vbn_ref_size)
    d = arch.discriminator(data_shape=data_shape, width=cfg.d_width, norm=cfg.d_norm, num_outputs=cfg.num_outputs)
    if cfg.minibatch_discrimination:
        from gan_lightning.layers import add_minibatch_discrimination

        add_minibatch_discrimination(d, cfg.mbd_kernels, cfg.mbd_dim, num_outputs=cfg.num_outputs)
    if cfg.d_spectral_norm:  # last: the head minibatch discrimination puts in is wrapped too
        from gan_lightning.layers import apply_spectral_norm

        try:
            apply_spectral_norm(d)
        except ValueError as e:
            raise UsageError(f"--d_spectral_norm: {e}") from None
    return g, d


def build_noise(cfg: ResolvedConfig):
    """The InstanceNoise on D's inputs; off (a no-op) when --noise_std is 0 and not adaptive."""
    from gan_lightning.core.noise import InstanceNoise, make_schedule

    if not noise_enabled(cfg):
        return InstanceNoise.off()
    return InstanceNoise(make_schedule(
        cfg.noise_schedule, cfg.noise_std, cfg.noise_final_std, cfg.noise_anneal_steps, cfg.noise_target_acc
    ))


def build_gradient_regularizers(cfg: ResolvedConfig) -> list[Any]:
    """D's penalties on its input gradient: WGAN-GP's, R1, R2 (lazy every --reg_every D steps) and Roth
    et al.'s; each only when its weight is > 0. Fresh objects: the run's D and the probe's D build their own."""
    from gan_lightning.core.penalties import GradientPenalty, RothRegularizer, ZeroCenteredGradientPenalty

    found: list[Any] = [GradientPenalty(cfg.gp_weight)] if cfg.gp_weight > 0 else []
    found += [ZeroCenteredGradientPenalty(weight, samples, cfg.reg_every)
              for weight, samples in ((cfg.r1_weight, "real"), (cfg.r2_weight, "fake")) if weight > 0]
    if cfg.roth_gamma > 0:
        found.append(RothRegularizer.annealed(cfg.roth_schedule, cfg.roth_gamma, cfg.roth_final_gamma,
                                              cfg.roth_anneal_steps))
    return found


def build_g_objective(cfg: ResolvedConfig, discriminator: Any):
    """What G minimizes: feature matching on ``discriminator``, or the G loss of ``--loss``."""
    from gan_lightning.core.losses import LOSSES
    from gan_lightning.core.objectives import AdversarialObjective, FeatureMatching

    if cfg.g_objective == "adversarial":
        return AdversarialObjective(LOSSES[cfg.loss].g)
    try:
        return FeatureMatching(cfg.fm_distance, cfg.fm_layer, discriminator=discriminator)
    except ValueError as e:
        raise UsageError(f"--fm_layer: {e}") from None


def build_gan(cfg: ResolvedConfig, data_shape: tuple[int, ...]):
    """The GAN LightningModule for ``cfg``: networks, losses and techniques resolved from names."""
    from gan_lightning.core.losses import LOSSES
    from gan_lightning.modules import GAN
    from gan_lightning.core.penalties import HistoricalAveraging, WeightClip

    g, d = build_networks(cfg, data_shape)  # historical averaging needs D with its final head
    pair = LOSSES[cfg.loss]
    d_loss = pair.d if cfg.label_smoothing == 1.0 else functools.partial(pair.d, real_target=cfg.label_smoothing)
    d_penalties = build_gradient_regularizers(cfg)
    g_penalties: list = []
    if cfg.historical_averaging > 0:
        d_penalties.append(HistoricalAveraging(cfg.historical_averaging, d, "d"))
        g_penalties.append(HistoricalAveraging(cfg.historical_averaging, g, "g"))
    constraints = [WeightClip(cfg.weight_clip)] if cfg.weight_clip > 0 else []
    return GAN(
        g, d, d_loss, pair.g,
        lr_g=cfg.lr_g, lr_d=cfg.lr_d, beta1=cfg.beta1, beta2=cfg.beta2, adam_eps=cfg.adam_eps, n_critic=cfg.n_critic,
        d_penalties=d_penalties, d_constraints=constraints, g_objective=build_g_objective(cfg, d),
        g_penalties=g_penalties, d_input=build_noise(cfg), on_nonfinite=cfg.on_nonfinite,
        weight_check_every=cfg.log_every_n_steps, g_ema=cfg.g_ema, config=cfg.to_dict(),
    )


def build_semi_supervised(cfg: ResolvedConfig, data_shape: tuple[int, ...]):
    """The SemiSupervisedGAN for ``cfg``: a K-class D (K from the data set), G by feature matching."""
    from gan_lightning.modules import SemiSupervisedGAN

    g, d = build_networks(cfg, data_shape)
    return SemiSupervisedGAN(
        g, d, cfg.num_outputs,
        lr_g=cfg.lr_g, lr_d=cfg.lr_d, beta1=cfg.beta1, beta2=cfg.beta2, adam_eps=cfg.adam_eps,
        unsup_weight=cfg.unsup_weight,
        ema_decay=cfg.ema_decay, lr_decay_steps=cfg.lr_decay_steps, g_objective=build_g_objective(cfg, d),
        g_ema=cfg.g_ema, on_nonfinite=cfg.on_nonfinite, weight_check_every=cfg.log_every_n_steps,
        config=cfg.to_dict(),
    )


def build_module(cfg: ResolvedConfig, data_shape: tuple[int, ...]):
    """The LightningModule of ``cfg.task`` (see TASKS), in ``--channels_last`` format and ``--compile``d."""
    module = TASKS[cfg.task](cfg, data_shape)
    if cfg.channels_last:
        import torch

        module.to(memory_format=torch.channels_last)  # 4-D (convolution) weights; the batches: build_datamodule
    if cfg.compile:
        compile_networks(module.generator, module.discriminator)
    return module


def compile_networks(*networks: Any) -> None:
    """``torch.compile`` each network's direct submodules in place (``nn.Module.compile``).

    Submodules rather than the networks: D is called through ``features`` and ``head`` (the one call
    site ``discriminate``), not its ``forward``. Compiling in place keeps parameter names, so
    checkpoints of compiled and eager runs are the same files.
    """
    for net in networks:
        for child in net.children():
            child.compile()


# What --task names: the training loop (LightningModule) it builds.
TASKS: dict[str, Callable[[ResolvedConfig, tuple[int, ...]], Any]] = {
    "gan": build_gan,
    "semi_supervised": build_semi_supervised,
}


# -- the probe's D ----------------------------------------------------------------------------
def probe_norm(cfg: ResolvedConfig, norm: str = PROBE_NORM) -> str:
    """The normalization the probe's D gets: ``norm``, or the only one ``cfg``'s architecture has
    (``improved_mnist``: weight norm, "none"). With ``--d_spectral_norm`` the probe's D is spectrally
    normalized like the run's and gets "none": the recipe's layer norm would cancel spectral norm.

    Raises:
        UsageError: ``norm`` is not one the architecture's D accepts (with spectral norm: not the
            recipe's default or "none").
    """
    from gan_lightning.networks import NETWORKS

    arch = cfg.arch
    if cfg.d_spectral_norm:
        if norm not in (PROBE_NORM, "none"):
            raise UsageError(f"--probe_norm {norm}: with --d_spectral_norm the probe's D has no norm layer "
                             f"(it would cancel spectral norm); use --probe_norm none")
        return "none"
    accepted = NETWORKS[arch].d_norms
    if len(accepted) == 1:
        return accepted[0]
    if norm not in accepted:
        raise UsageError(f"--probe_norm {norm}: the {arch} discriminator accepts {list(accepted)}")
    return norm


def probe_discriminator(cfg: ResolvedConfig, data_shape: tuple[int, ...], norm: str = PROBE_NORM) -> Any:
    """A fresh probe D: the plain one-logit D of ``cfg``'s architecture and width, with :func:`probe_norm`.

    No minibatch discrimination and one output (also for a semi-supervised run's G); spectral norm when
    the run's D has it (``--d_spectral_norm``).
    """
    from dataclasses import replace

    plain = replace(cfg, task="gan", num_outputs=1, d_norm=probe_norm(cfg, norm), minibatch_discrimination=False)
    return build_networks(plain, data_shape)[1]


# -- callbacks, loggers, Trainer ----------------------------------------------------------------
def build_strategy(cfg: ResolvedConfig) -> Any:
    """What ``Trainer(strategy=...)`` takes: the project's ``ddp_gan`` as an object, single_device as
    Lightning's ``auto`` (which puts the one process on the device it picks; Lightning's own
    ``single_device`` name means the CPU), other names as they are."""
    from gan_lightning.trainer.ddp import GradientAveragingDDP

    if cfg.strategy == DDP_GAN:
        return GradientAveragingDDP()
    return "auto" if cfg.strategy == SINGLE_DEVICE else cfg.strategy


def build_diagnostics(cfg: ResolvedConfig) -> list[Any]:
    """D accuracy, gradient norms and (with --d_spectral_norm) the largest singular values of D's weights
    at the loggers' cadence (off with --diagnostics false), and the probe."""
    from gan_lightning.callbacks import DiscriminatorAccuracy, GradientNorms, ProbeCallback, SpectralNorms

    callbacks: list[Any] = []
    if cfg.diagnostics:
        callbacks += [
            DiscriminatorAccuracy(every_n_steps=cfg.log_every_n_steps),
            GradientNorms(every_n_steps=cfg.log_every_n_steps, per_layer=cfg.grad_norm_per_layer,
                          shadow_every_n_steps=cfg.shadow_every_n_steps),
        ]
        if cfg.d_spectral_norm:
            callbacks.append(SpectralNorms(every_n_steps=cfg.log_every_n_steps))
    if cfg.probe_every_n_epochs:
        callbacks.append(ProbeCallback(every_n_epochs=cfg.probe_every_n_epochs, d_iters=cfg.probe_d_iters,
                                       batch_size=cfg.batch_size, seed=cfg.seed,
                                       make_discriminator=lambda shape: probe_discriminator(cfg, shape)))
    return callbacks


def build_metrics(cfg: ResolvedConfig) -> list[Any]:
    """FID/KID/IS/PR (images) or mode coverage (ring, grid) every --metric_every_n_epochs; none when 0."""
    from gan_lightning.callbacks import MetricsCallback
    from gan_lightning.metrics.keys import parse_metrics

    if cfg.metric_every_n_epochs == 0 or (cfg.data_kind == "images" and not parse_metrics(cfg.metrics)):
        return []
    return [MetricsCallback(
        every_n_epochs=cfg.metric_every_n_epochs, num_samples=cfg.metric_num_samples, extractor=cfg.metric_extractor,
        metrics=cfg.metrics, weights_path=cfg.metric_weights, download=cfg.metric_download, dataset=cfg.dataset,
        image_size=cfg.image_size, data_root=cfg.data_root, split=cfg.metric_split or None,
        kid_subset_size=cfg.metric_kid_subset_size, cache_dir=cfg.metric_cache_dir or None,
        live_g=cfg.metric_live_g,
        progress=sys.stderr.isatty(), flags={"num_samples": "--metric_num_samples", "kid_subset_size": "--metric_kid_subset_size",
               "metrics": "--metrics"},
    )]


def build_trainer(cfg: ResolvedConfig, run_dir: Path, extra_callbacks: Sequence[Any] = ()):
    """The Trainer of a run: checkpoints (atomic last.ckpt), samples, loggers, hardware flags.

    Raises:
        UsageError: when Lightning rejects the hardware flags (e.g. more devices than exist).
    """
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from gan_lightning.callbacks import LastCheckpoint, SampleGrid, StopAtGSteps
    from gan_lightning.trainer.checkpoints import AtomicCheckpointIO
    from gan_lightning.trainer.loggers import ProgressAxis
    from gan_lightning.trainer.outputs import say

    callbacks = [
        SampleGrid(run_dir / "samples", every_n_epochs=cfg.sample_every_n_epochs),
        *build_diagnostics(cfg),
        *build_metrics(cfg),
        *extra_callbacks,
        *([StopAtGSteps(cfg.max_steps)] if cfg.max_steps > 0 else []),
        ProgressAxis(),
        LastCheckpoint(run_dir / "checkpoints" / "last.ckpt"),  # last: saves what the others did
    ]
    devices = list(cfg.devices_arg) if isinstance(cfg.devices_arg, tuple) else cfg.devices_arg
    try:
        return L.Trainer(
            accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes,
            strategy=build_strategy(cfg), precision=cfg.precision,
            benchmark=True if cfg.cuda else None,  # cuDNN picks the fastest kernels for the fixed image size
            max_epochs=cfg.max_epochs,
            logger=build_loggers(cfg, run_dir, say) or False, callbacks=callbacks,
            log_every_n_steps=cfg.log_every_n_steps, default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()], enable_model_summary=False, enable_checkpointing=False,
            enable_progress_bar=sys.stderr.isatty(),  # no escape codes in log files
        )
    except (MisconfigurationException, ValueError) as e:
        raise UsageError(str(e).strip().splitlines()[0]) from None


def build_loggers(cfg: ResolvedConfig, run_dir: Path, say=print) -> list[Any]:
    """CSV always (``<run_dir>/metrics.csv``), plus W&B or TensorBoard; nothing for ``--logger none``.

    Args:
        cfg: the run's config; logged as the W&B config.
        run_dir: the run folder.
        say: where the one-line offline notice goes.
    """
    from gan_lightning.lightning_state import drop_wandb_init_setting
    from gan_lightning.trainer.loggers import AppendingCSVLogger, RunWandbLogger, noise_label, run_group, wandb_mode

    if cfg.logger == "none":
        return []
    loggers: list[Any] = [AppendingCSVLogger(run_dir)]
    if cfg.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    elif cfg.logger == "wandb":
        mode, why = wandb_mode()
        if mode == "offline":
            say(f"W&B: {why}; logging offline under {run_dir}/wandb; "
                f"sync later with `wandb sync {run_dir}/wandb/offline-run-*`")
        # One id per run folder, kept in a file, so a resumed run continues the same W&B run.
        id_file = run_dir / "wandb_id.txt"
        if not id_file.is_file():
            import secrets

            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(secrets.token_hex(4))
        wandb_logger = RunWandbLogger(
            x_axis=cfg.x_axis, project=cfg.project, name=cfg.run_name, save_dir=str(run_dir), mode=mode,
            id=id_file.read_text().strip(), resume="allow",
            group=run_group(cfg), tags=[cfg.loss, f"noise:{noise_label(cfg)}", f"remedy:{cfg.remedy}", cfg.dataset,
                                           cfg.arch],
            config=cfg.to_dict(),
        )
        drop_wandb_init_setting(wandb_logger, "anonymous")  # W&B warns that anonymous=None has no effect
        loggers.append(wandb_logger)
    return loggers
