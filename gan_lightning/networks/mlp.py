"""Fully connected generator and discriminator, for 2-D point sets and flattened images.

The layout follows the MLP models of Goodfellow et al. 2014, "Generative Adversarial Nets"
(arXiv 1406.2661): a few hidden layers of equal width, ReLU in G, LeakyReLU(0.2) in D as in
Radford et al. 2015 (arXiv 1511.06434).
"""

from __future__ import annotations

import math

import torch.nn as nn
from torch import Tensor

from gan_lightning.layers import VirtualBatchNorm, prepend_reference, reference_latents

G_NORMS: tuple[str, ...] = ("batch", "none", "vbn")
D_NORMS: tuple[str, ...] = ("none", "layer")
N_HIDDEN = 3
VBN_REF_SIZE = 64  # default size of virtual batch norm's reference batch


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Raise ValueError naming the valid choices when `value` is not one of them."""
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not supported; choose one of {list(choices)}")


def check_data_shape(x: Tensor, data_shape: tuple[int, ...], who: str) -> None:
    """Raise ValueError unless `x` has shape (B, *data_shape).

    Args:
        x: a batch, expected shape (B, *data_shape).
        data_shape: the shape of one example the network was built for.
        who: the network's name, for the message.
    """
    if tuple(x.shape[1:]) != tuple(data_shape) or x.dim() != len(data_shape) + 1:
        raise ValueError(
            f"{who} was built for inputs of shape (B, {', '.join(map(str, data_shape))}) "
            f"but got {tuple(x.shape)}"
        )


def norm1d(norm: str, features: int, ref_size: int = VBN_REF_SIZE) -> nn.Module:
    """Build the generator normalization named by `norm` for (B, features) activations.

    "vbn" is virtual batch norm (Salimans et al. 2016, sec. 3.5); it needs the generator to put
    its reference batch in front of every input (see `reference_buffer`).
    """
    if norm == "batch":
        return nn.BatchNorm1d(features)
    if norm == "vbn":
        return VirtualBatchNorm(features, ref_size)
    return nn.Identity()


def reference_buffer(norm: str, z_dim: int, ref_size: int) -> Tensor | None:
    """The fixed reference latents (ref_size, z_dim) of a "vbn" generator, else None (no buffer).

    A generator registers it as its `ref_z` buffer (so checkpoints carry it), runs the network on
    [ref_z; z] and keeps the last B rows of the output.
    """
    return reference_latents(ref_size, z_dim) if norm == "vbn" else None


class MLPGenerator(nn.Module):
    """z -> 3 x [Linear(width) -> norm -> ReLU] -> Linear(prod(data_shape)) -> reshape.

    Image shapes (len(data_shape) > 1) end in tanh, so samples live in [-1, 1] like the data;
    point data (len(data_shape) == 1) gets a linear output, because points are not bounded.

    Args:
        z_dim: latent size.
        data_shape: (D,) for points or (C, H, W) for images.
        width: hidden layer size.
        norm: "batch" (BatchNorm1d after each hidden Linear), "vbn" (virtual batch norm) or "none".
        vbn_ref_size: size of the reference batch with norm="vbn" (ignored otherwise).
    """

    def __init__(
        self, z_dim: int, data_shape: tuple[int, ...], width: int = 64, norm: str = "batch",
        vbn_ref_size: int = VBN_REF_SIZE,
    ):
        super().__init__()
        check_choice(norm, G_NORMS, "MLP generator norm")
        if z_dim < 1 or width < 1 or not data_shape:
            raise ValueError(f"need z_dim >= 1, width >= 1 and a data_shape, got {z_dim}, {width}, {data_shape}")
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        self.register_buffer("ref_z", reference_buffer(norm, z_dim, vbn_ref_size))  # (R, z_dim) or None
        layers: list[nn.Module] = []
        in_dim = z_dim
        for _ in range(N_HIDDEN):
            # A bias right before a batch norm (virtual or not) is cancelled by its mean subtraction.
            layers.append(nn.Linear(in_dim, width, bias=norm == "none"))
            layers.append(norm1d(norm, width, vbn_ref_size))
            layers.append(nn.ReLU())
            in_dim = width
        layers.append(nn.Linear(width, math.prod(self.data_shape)))
        layers.append(nn.Tanh() if len(self.data_shape) > 1 else nn.Identity())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Map latents (B, z_dim) to samples (B, *data_shape)."""
        check_data_shape(z, (self.z_dim,), "MLPGenerator")
        out = self.net(prepend_reference(z, self.ref_z))  # (R + B, prod), R = 0 without VBN
        out = out[out.shape[0] - z.shape[0]:]  # (B, prod): drop the reference rows
        return out.view(z.shape[0], *self.data_shape)  # (B, prod) -> (B, *data_shape)


class MLPDiscriminator(nn.Module):
    """flatten -> 3 x [Linear(width) -> norm -> LeakyReLU(0.2)] = features -> Linear(width, 1).

    Returns raw logits (higher = more real); losses apply the sigmoid themselves.

    Args:
        data_shape: (D,) for points or (C, H, W) for images.
        width: hidden layer size.
        norm: "none" or "layer" (LayerNorm after each hidden Linear). No BatchNorm: it would
            mix the examples of a batch, which changes what D computes for a single input.
        num_outputs: 1 logit for a GAN; K class logits for the semi-supervised K+1 classifier.

    Attributes:
        feature_dim: size of `features(x)`, equal to `width`.
        head: the final Linear(feature_dim, num_outputs).
    """

    def __init__(self, data_shape: tuple[int, ...], width: int = 64, norm: str = "none", num_outputs: int = 1):
        super().__init__()
        check_choice(norm, D_NORMS, "MLP discriminator norm")
        if width < 1 or not data_shape or num_outputs < 1:
            raise ValueError(f"need width >= 1, a data_shape and num_outputs >= 1, got {width}, {data_shape}, "
                             f"{num_outputs}")
        self.data_shape = tuple(data_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        in_dim = math.prod(self.data_shape)
        for _ in range(N_HIDDEN):
            layers.append(nn.Linear(in_dim, width))
            layers.append(nn.LayerNorm(width) if norm == "layer" else nn.Identity())
            layers.append(nn.LeakyReLU(0.2))
            in_dim = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.head = nn.Linear(width, num_outputs)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features: (B, *data_shape) -> (B, feature_dim)."""
        check_data_shape(x, self.data_shape, "MLPDiscriminator")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Raw logits: (B, *data_shape) -> (B,) (or (B, num_outputs) when num_outputs > 1)."""
        return self.head(self.features(x)).squeeze(1)
