"""LightningModules: one per training loop that really differs."""

from gan_lightning.modules.gan import GAN

__all__ = ["GAN"]
