"""LightningModules: one per training loop that really differs."""

from gan_lightning.modules.gan import GAN
from gan_lightning.modules.semi_supervised import SemiSupervisedGAN

__all__ = ["GAN", "SemiSupervisedGAN"]
