"""LightningModules: one per training loop that really differs, and what they share (base, ema).

May import: ``core``, ``layers``, ``networks``, ``diagnostics``, ``errors``, ``torch_utils``, ``images``,
``lightning_state``.
"""

from gan_lightning.modules.ema import WeightEMA
from gan_lightning.modules.gan import GAN
from gan_lightning.modules.semi_supervised import SemiSupervisedGAN

__all__ = ["GAN", "SemiSupervisedGAN", "WeightEMA"]
