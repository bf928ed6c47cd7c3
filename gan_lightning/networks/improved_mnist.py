"""The reference MNIST networks of Salimans et al. 2016, "Improved Techniques for Training GANs".

arXiv 1606.03498, sec. 5.1 and openai/improved-gan ``mnist_svhn_cifar10/train_mnist_feature_matching.py``
(its ``nn.py`` for the layers), followed as closely as a [-1, 1] data range allows:
- G: z -> U(0, 1) latents (100) -> 500 softplus + BN -> 500 softplus + BN -> 784 (weight norm) -> output.
  Glorot-uniform weights, BatchNorm with a learned shift only (``g=None`` in the reference), the
  output layer's bias at 0 and its weight-norm scale at 1.
- D: Gaussian noise on the input, then weight-normalized dense layers 1000-500-250-250-250, each
  with ReLU followed by Gaussian noise of std 0.5, then a weight-normalized dense output layer;
  directions v ~ N(0, 0.1^2), scales g = 1, biases 0. D's hidden scales g are frozen
  (``requires_grad`` off, still in ``state_dict``; the reference's ``train_scale=False``): only the
  output layer's scale learns.

How the [-1, 1] data range is bridged (the reference's data lives in [0, 1]):
- G draws from the project's z ~ N(0, I) like every generator here; its first step maps z
  through the normal CDF, so the network sees the reference's z ~ U(0, 1) exactly.
- G's output is 2 sigmoid(a) - 1: the reference's sigmoid(a), rescaled to [-1, 1] (tanh(a)
  would double the output's slope).
- D's input noise is 0.6 instead of 0.3: the same noise relative to the data.

Left to the caller: the data-dependent init of D's weight norm (on 500 training images, with the
noise layers on, as the reference) is done by the semi-supervised module at the start of training
(``layers.init_weight_norm_from_data``); a D used in a plain GAN keeps g = 1. Fully connected, so
any channel count works; the reference has one (MNIST). Only 28x28.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from gan_lightning.layers import GaussianNoise, is_weight_normalized, prepend_reference, wn_linear
from gan_lightning.networks.mlp import VBN_REF_SIZE, check_choice, check_data_shape, norm1d, reference_buffer

IMAGE_SIZES: tuple[int, ...] = (28,)
G_NORMS: tuple[str, ...] = ("batch", "none", "vbn")
D_NORMS: tuple[str, ...] = ("none",)  # D is always weight-normalized; no other normalization
G_HIDDEN: tuple[int, ...] = (500, 500)
D_HIDDEN: tuple[int, ...] = (1000, 500, 250, 250, 250)
INPUT_NOISE = 0.6  # the reference's 0.3 on [0, 1] data, rescaled to [-1, 1]
HIDDEN_NOISE = 0.5
D_INIT_STD = 0.1  # the reference DenseLayer's theta ~ N(0, 0.1^2): the speed at which Adam turns v


class NormalToUniform(nn.Module):
    """z ~ N(0, 1) -> Phi(z) ~ U(0, 1), elementwise (Phi: the standard normal CDF)."""

    def forward(self, z: Tensor) -> Tensor:
        return torch.special.ndtr(z)


class SigmoidOutput(nn.Module):
    """a -> 2 sigmoid(a) - 1: the reference's sigmoid output on [0, 1], rescaled to [-1, 1]."""

    def forward(self, a: Tensor) -> Tensor:
        return 2.0 * torch.sigmoid(a) - 1.0


def _reference_init(layer: nn.Linear, std: float | None) -> nn.Linear:
    """Weights (v for weight norm) Glorot-uniform (``std=None``) or N(0, std^2), bias 0; returns ``layer``."""
    weight = layer.parametrizations.weight.original1 if is_weight_normalized(layer) else layer.weight
    with torch.no_grad():
        if std is None:
            nn.init.xavier_uniform_(weight)
        else:
            weight.normal_(0.0, std)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def check_image_shape(data_shape: tuple[int, ...], who: str) -> None:
    """Raise ValueError unless data_shape is (C, 28, 28)."""
    if len(data_shape) != 3 or data_shape[0] < 1 or data_shape[1] != data_shape[2]:
        raise ValueError(f"{who} needs an image shape (C, 28, 28), got {tuple(data_shape)}")
    if data_shape[1] not in IMAGE_SIZES:
        raise ValueError(
            f"{who} does not support image size {data_shape[1]}; supported sizes: {list(IMAGE_SIZES)}"
        )


class ImprovedMNISTGenerator(nn.Module):
    """z -> Phi(z) -> 2 x [Linear(500) -> norm -> softplus] -> WN Linear(C*28*28) -> 2 sigmoid - 1.

    z ~ N(0, I) as for every generator here; Phi (the normal CDF) turns it into the reference's
    U(0, 1) latents. With norm="batch" the BatchNorm layers learn a shift only (their scale is
    frozen at 1), as the reference's ``batch_norm(..., g=None)``.

    Args:
        z_dim: latent size (the reference uses 100).
        data_shape: (C, 28, 28); the reference has C = 1.
        width: ignored: the layer sizes are the reference's (accepted for the common signature).
        norm: "batch" (the reference), "vbn" (virtual batch norm) or "none".
        vbn_ref_size: size of the reference batch with norm="vbn" (ignored otherwise).
    """

    def __init__(
        self, z_dim: int = 100, data_shape: tuple[int, ...] = (1, 28, 28), width: int | None = None,
        norm: str = "batch", vbn_ref_size: int = VBN_REF_SIZE,
    ):
        super().__init__()
        check_choice(norm, G_NORMS, "improved_mnist generator norm")
        check_image_shape(data_shape, "improved_mnist generator")
        if z_dim < 1:
            raise ValueError(f"need z_dim >= 1, got {z_dim}")
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        self.register_buffer("ref_z", reference_buffer(norm, z_dim, vbn_ref_size))  # (R, z_dim) or None
        layers: list[nn.Module] = [NormalToUniform()]
        in_dim = z_dim
        for units in G_HIDDEN:
            # The norm comes before the softplus, as in the reference's nn.batch_norm wrapper.
            bn = norm1d(norm, units, vbn_ref_size)
            if isinstance(bn, nn.BatchNorm1d):
                bn.weight.requires_grad_(False)  # shift only (g=None in the reference)
            layers += [_reference_init(nn.Linear(in_dim, units, bias=norm == "none"), None), bn, nn.Softplus()]
            in_dim = units
        out = _reference_init(wn_linear(in_dim, math.prod(self.data_shape), scale=1.0), None)
        layers += [out, SigmoidOutput()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Map latents (B, z_dim) to images (B, C, 28, 28) in [-1, 1]."""
        check_data_shape(z, (self.z_dim,), "ImprovedMNISTGenerator")
        out = self.net(prepend_reference(z, self.ref_z))  # (R + B, C*28*28), R = 0 without VBN
        out = out[out.shape[0] - z.shape[0]:]  # (B, C*28*28): drop the reference rows
        return out.view(z.shape[0], *self.data_shape)  # -> (B, C, 28, 28)


class ImprovedMNISTDiscriminator(nn.Module):
    """noise(0.6) -> 5 x [WN Linear -> ReLU -> noise(0.5)] -> WN Linear(250, num_outputs).

    ``features(x)`` is the last 250-unit ReLU output *before* its noise: the layer the reference
    code matches features on (``layers[-3]``). ``head`` is therefore
    ``Sequential(GaussianNoise(0.5), wn_linear(250, num_outputs))``. The noise layers are active
    in training mode only.

    Args:
        data_shape: (C, 28, 28); the reference has C = 1.
        width: ignored: the layer sizes are the reference's (accepted for the common signature).
        norm: "none" only (the layers are always weight-normalized).
        num_outputs: 1 logit for a GAN; K class logits for the semi-supervised K+1 classifier
            (its "generated" logit fixed at 0, Salimans et al. 2016, sec. 5).

    Attributes:
        feature_dim: 250.
        head: maps (B, 250) features to (B, num_outputs) logits.
    """

    def __init__(
        self, data_shape: tuple[int, ...] = (1, 28, 28), width: int | None = None, norm: str = "none",
        num_outputs: int = 1,
    ):
        super().__init__()
        check_choice(norm, D_NORMS, "improved_mnist discriminator norm")
        check_image_shape(data_shape, "improved_mnist discriminator")
        if num_outputs < 1:
            raise ValueError(f"need num_outputs >= 1, got {num_outputs}")
        self.data_shape = tuple(data_shape)
        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(INPUT_NOISE)]  # (B, C, 28, 28) -> (B, C*784)
        in_dim = math.prod(self.data_shape)
        for i, units in enumerate(D_HIDDEN):
            if i > 0:  # the noise after the last hidden layer belongs to the head (features are pre-noise)
                layers.append(GaussianNoise(HIDDEN_NOISE))
            layers += [_reference_init(wn_linear(in_dim, units, scale=1.0), D_INIT_STD), nn.ReLU()]
            in_dim = units
        self.body = nn.Sequential(*layers)
        for layer in self.body:
            if is_weight_normalized(layer):
                layer.parametrizations.weight.original0.requires_grad_(False)  # train_scale=False
        self.feature_dim = in_dim
        self.head = nn.Sequential(
            GaussianNoise(HIDDEN_NOISE), _reference_init(wn_linear(in_dim, num_outputs, scale=1.0), D_INIT_STD)
        )

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features: (B, C, 28, 28) -> (B, 250)."""
        check_data_shape(x, self.data_shape, "ImprovedMNISTDiscriminator")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Raw logits: (B, C, 28, 28) -> (B,) (or (B, num_outputs) when num_outputs > 1)."""
        return self.head(self.features(x)).squeeze(1)
