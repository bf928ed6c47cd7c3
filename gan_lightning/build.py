"""Objects from a TrainConfig: data module, networks, instance noise and the LightningModule.

The names a config holds (data set, arch, loss, task, ...) become objects here; ``config.validate``
has already checked them, so a lookup here does not fail on a user's typo.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from gan_lightning.config import TrainConfig, noise_enabled, resolve_arch, resolve_d_norm, resolve_g_objective
from gan_lightning.errors import UsageError


def build_datamodule(cfg: TrainConfig):
    """The LightningDataModule of ``cfg.dataset``: labeled + unlabeled batches for the semi-supervised task."""
    from gan_lightning.data import DATASETS, GANDataModule

    common = dict(image_size=cfg.image_size, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                  data_root=cfg.data_root, download=cfg.download)
    if cfg.task == "semi_supervised":
        from gan_lightning.ssl_data import SemiSupervisedDataModule

        return SemiSupervisedDataModule(
            DATASETS[cfg.dataset], cfg.labels_per_class, seed=label_seed(cfg), shuffle_seed=cfg.seed,
            unlabeled=cfg.unlabeled, **common
        )
    return GANDataModule(DATASETS[cfg.dataset], seed=cfg.seed, **common)


def label_seed(cfg: TrainConfig) -> int:
    """Seed of the labeled subset: ``--label_seed``, or the run's ``--seed`` when it is -1."""
    return cfg.seed if cfg.label_seed < 0 else cfg.label_seed


def num_outputs(cfg: TrainConfig) -> int:
    """D's logits: 1 for a GAN, K class logits for the semi-supervised K+1 discriminator."""
    from gan_lightning.data import DATASETS

    return DATASETS[cfg.dataset].num_classes if cfg.task == "semi_supervised" else 1


def build_networks(cfg: TrainConfig, data_shape: tuple[int, ...]):
    """(generator, discriminator) for ``cfg.arch``, the data's shape and the task's number of D outputs."""
    from gan_lightning.networks import NETWORKS

    arch = NETWORKS[resolve_arch(cfg)]
    k = num_outputs(cfg)
    g = arch.generator(z_dim=cfg.z_dim, data_shape=data_shape, width=cfg.g_width, norm=cfg.g_norm,
                       vbn_ref_size=cfg.vbn_ref_size)
    d = arch.discriminator(data_shape=data_shape, width=cfg.d_width, norm=resolve_d_norm(cfg), num_outputs=k)
    if cfg.minibatch_discrimination:
        from gan_lightning.layers import add_minibatch_discrimination

        add_minibatch_discrimination(d, cfg.mbd_kernels, cfg.mbd_dim, num_outputs=k)
    return g, d


def build_noise(cfg: TrainConfig):
    """The InstanceNoise on D's inputs; off (a no-op) when --noise_std is 0 and not adaptive."""
    from gan_lightning.noise import InstanceNoise, make_schedule

    if not noise_enabled(cfg):
        return InstanceNoise.off()
    return InstanceNoise(make_schedule(
        cfg.noise_schedule, cfg.noise_std, cfg.noise_final_std, cfg.noise_anneal_steps, cfg.noise_target_acc
    ))


def build_g_objective(cfg: TrainConfig, discriminator: Any):
    """What G minimizes: feature matching on ``discriminator``, or the G loss of ``--loss``."""
    from gan_lightning.losses import LOSSES
    from gan_lightning.objectives import AdversarialObjective, FeatureMatching

    if resolve_g_objective(cfg) == "adversarial":
        return AdversarialObjective(LOSSES[cfg.loss].g)
    try:
        return FeatureMatching(cfg.fm_distance, cfg.fm_layer, discriminator=discriminator)
    except ValueError as e:
        raise UsageError(f"--fm_layer: {e}") from None


def build_gan(cfg: TrainConfig, data_shape: tuple[int, ...]):
    """The GAN LightningModule for ``cfg``: networks, losses and techniques resolved from names."""
    from gan_lightning.losses import LOSSES
    from gan_lightning.modules import GAN
    from gan_lightning.penalties import GradientPenalty, HistoricalAveraging, WeightClip

    g, d = build_networks(cfg, data_shape)  # historical averaging needs D with its final head
    pair = LOSSES[cfg.loss]
    d_loss = pair.d if cfg.label_smoothing == 1.0 else functools.partial(pair.d, real_target=cfg.label_smoothing)
    d_penalties: list = [GradientPenalty(cfg.gp_weight)] if cfg.gp_weight > 0 else []
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
        weight_check_every=cfg.log_every_n_steps, config=cfg.to_dict(),
    )


def build_semi_supervised(cfg: TrainConfig, data_shape: tuple[int, ...]):
    """The SemiSupervisedGAN for ``cfg``: a K-class D (K from the data set), G by feature matching."""
    from gan_lightning.modules import SemiSupervisedGAN

    g, d = build_networks(cfg, data_shape)
    return SemiSupervisedGAN(
        g, d, num_outputs(cfg),
        lr_g=cfg.lr_g, lr_d=cfg.lr_d, beta1=cfg.beta1, beta2=cfg.beta2, adam_eps=cfg.adam_eps,
        unsup_weight=cfg.unsup_weight,
        ema_decay=cfg.ema_decay, lr_decay_steps=cfg.lr_decay_steps, g_objective=build_g_objective(cfg, d),
        config=cfg.to_dict(),
    )


def build_module(cfg: TrainConfig, data_shape: tuple[int, ...]):
    """The LightningModule of ``cfg.task`` (see TASKS)."""
    return TASKS[cfg.task](cfg, data_shape)


# What --task names: the training loop (LightningModule) it builds.
TASKS: dict[str, Callable[[TrainConfig, tuple[int, ...]], Any]] = {
    "gan": build_gan,
    "semi_supervised": build_semi_supervised,
}
