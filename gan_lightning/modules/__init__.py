"""LightningModules: one per training loop that really differs, and what they share (base, ema)."""

from gan_lightning.modules.ema import WeightEMA
from gan_lightning.modules.gan import GAN
from gan_lightning.modules.semi_supervised import SemiSupervisedGAN

__all__ = ["GAN", "SemiSupervisedGAN", "WeightEMA"]
