"""Generator/discriminator pairs and the NETWORKS table that names them.

Conventions shared by every architecture:
- A generator is built as `generator(z_dim=..., data_shape=..., width=..., norm=...,
  vbn_ref_size=...)`, maps z (B, z_dim) to (B, *data_shape) and stores `z_dim` and `data_shape`.
  Image outputs end in tanh (data in [-1, 1]); point outputs (data_shape = (D,)) are linear.
  With norm="vbn" (virtual batch norm) it holds a `ref_z` buffer of reference latents, runs on
  [ref_z; z] and returns the rows of z only.
- A discriminator is built as `discriminator(data_shape=..., width=..., norm=..., num_outputs=1)`
  and has `features(x) -> (B, feature_dim)`, `head` (Linear(feature_dim, num_outputs)) and
  `forward(x) = head(features(x)).squeeze(1)`: raw logits of shape (B,), higher = more real,
  no sigmoid; with num_outputs = K > 1, (B, K) class logits (the semi-supervised D). Wrong input
  shapes raise ValueError. improved_mnist's head is Sequential(GaussianNoise, Linear).

Names are looked up in NETWORKS by ``gan_lightning.config`` (resolving and checking ``--arch``) and
``gan_lightning.build`` (building the networks); nothing else needs the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from gan_lightning.networks import dcgan, improved_mnist, mlp
from gan_lightning.networks.dcgan import DCGANDiscriminator, DCGANGenerator, init_dcgan_weights
from gan_lightning.networks.improved_mnist import ImprovedMNISTDiscriminator, ImprovedMNISTGenerator
from gan_lightning.networks.mlp import MLPDiscriminator, MLPGenerator

__all__ = [
    "Arch",
    "NETWORKS",
    "MLPGenerator",
    "MLPDiscriminator",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "ImprovedMNISTGenerator",
    "ImprovedMNISTDiscriminator",
    "init_dcgan_weights",
]


@dataclass(frozen=True)
class Arch:
    """One architecture: how to build its two networks and what they accept.

    Attributes:
        generator: called as generator(z_dim=..., data_shape=..., width=..., norm=..., vbn_ref_size=...).
        discriminator: called as discriminator(data_shape=..., width=..., norm=..., num_outputs=...).
        image_sizes: supported H (= W) for image data; None means any data shape.
        g_norms: accepted values of the generator's `norm`.
        d_norms: accepted values of the discriminator's `norm`.
        d_spectral_norm: whether its discriminator takes spectral normalization (``--d_spectral_norm``,
            ``layers.apply_spectral_norm``); False when its weights are weight-normalized already.
    """

    generator: Callable[..., nn.Module]
    discriminator: Callable[..., nn.Module]
    image_sizes: tuple[int, ...] | None
    g_norms: tuple[str, ...]
    d_norms: tuple[str, ...]
    d_spectral_norm: bool = True


NETWORKS: dict[str, Arch] = {
    "mlp": Arch(MLPGenerator, MLPDiscriminator, None, mlp.G_NORMS, mlp.D_NORMS),
    "dcgan": Arch(DCGANGenerator, DCGANDiscriminator, dcgan.IMAGE_SIZES, dcgan.G_NORMS, dcgan.D_NORMS),
    "improved_mnist": Arch(
        ImprovedMNISTGenerator, ImprovedMNISTDiscriminator, improved_mnist.IMAGE_SIZES,
        improved_mnist.G_NORMS, improved_mnist.D_NORMS, d_spectral_norm=False,
    ),
}
