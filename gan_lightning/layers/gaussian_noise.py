"""Gaussian noise layers: the noise on D's inputs and hidden units in the reference MNIST networks
of Salimans et al. 2016 (active in train mode only).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def gaussian_noise(x: Tensor, std: float, training: bool = True) -> Tensor:
    """x + N(0, std^2) noise in training, x itself in eval or when std is 0."""
    if not training or std == 0:
        return x
    return x + std * torch.randn_like(x)


class GaussianNoise(nn.Module):
    """Additive Gaussian noise, active in training mode only (reference ``GaussianNoiseLayer``).

    Used in the reference MNIST discriminator of Salimans et al. 2016 on the input (std 0.3 for
    [0, 1] data) and after each hidden layer (std 0.5) as a regularizer.

    Args:
        std: standard deviation; 0 makes the layer an identity.

    Raises:
        ValueError: if std is negative.
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"GaussianNoise std must be >= 0, got {std}")
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_noise(x, self.std, self.training)

    def extra_repr(self) -> str:
        return f"std={self.std}"
