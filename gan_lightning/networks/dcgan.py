"""DCGAN generator and discriminator for 28x28, 32x32 and 64x64 images with any channel count.

Radford, Metz & Chintala 2015, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks" (arXiv 1511.06434), Section 3 guidelines: strided convolutions
instead of pooling, BatchNorm in both networks except the generator output and the discriminator
input, ReLU in G with tanh at the output, LeakyReLU(0.2) in D, weights drawn from N(0, 0.02).
"""

from __future__ import annotations

import math

import torch.nn as nn
from torch import Tensor

from gan_lightning.layers import VirtualBatchNorm, prepend_reference
from gan_lightning.networks.mlp import VBN_REF_SIZE, check_choice, check_data_shape, reference_buffer

# image size -> side of the smallest feature map (G starts there, D ends there)
START_SIZES: dict[int, int] = {28: 7, 32: 4, 64: 4}
IMAGE_SIZES: tuple[int, ...] = tuple(START_SIZES)
G_NORMS: tuple[str, ...] = ("batch", "none", "vbn")
D_NORMS: tuple[str, ...] = ("batch", "none", "layer")


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN initialization (Radford et al. 2015, Sec. 4): weights N(0, 0.02), biases 0.

    Normalization scales are drawn from N(1, 0.02), as in the reference implementation (virtual
    batch norm too: improved-gan draws its log-scale from N(0, 0.02)). Use it as
    `net.apply(init_dcgan_weights)`; modules of other types are left alone.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, VirtualBatchNorm)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def norm2d(norm: str, channels: int, ref_size: int = VBN_REF_SIZE) -> nn.Module:
    """Build the normalization named by `norm` for a (B, channels, H, W) map.

    "vbn" (generator only) is virtual batch norm with a reference batch of `ref_size` rows.
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "vbn":
        return VirtualBatchNorm(channels, ref_size)
    if norm == "layer":
        # GroupNorm with one group normalizes over (C, H, W) of each example: a LayerNorm
        # that does not mix examples, usable with gradient penalties.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def image_geometry(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Check an image shape and return (channels, start map side s0, number of stride-2 blocks).

    Raises:
        ValueError: if `data_shape` is not (C, H, H) with H in IMAGE_SIZES.
    """
    if len(data_shape) != 3 or data_shape[1] != data_shape[2] or data_shape[0] < 1:
        raise ValueError(f"DCGAN needs a square image shape (C, H, H), got {tuple(data_shape)}")
    size = data_shape[1]
    if size not in START_SIZES:
        raise ValueError(f"DCGAN does not support image size {size}; supported sizes: {list(IMAGE_SIZES)}")
    s0 = START_SIZES[size]
    return data_shape[0], s0, int(math.log2(size // s0))  # 28 -> 7, 2 blocks; 64 -> 4, 4 blocks


class DCGANGenerator(nn.Module):
    """z -> ConvTranspose to an s0 x s0 map -> stride-2 ConvTranspose blocks -> tanh.

    Channels halve at each block and the last block outputs C channels, e.g. for 64x64 and
    width w: (8w, 4, 4) -> (4w, 8, 8) -> (2w, 16, 16) -> (w, 32, 32) -> (C, 64, 64).

    Args:
        z_dim: latent size.
        data_shape: (C, H, W) with H = W in (28, 32, 64).
        width: channels of the last hidden map (the largest one).
        norm: "batch", "vbn" (virtual batch norm, Salimans et al. 2016, sec. 3.5) or "none";
            applied after every layer but the output.
        vbn_ref_size: size of the reference batch with norm="vbn" (ignored otherwise).
    """

    def __init__(
        self, z_dim: int, data_shape: tuple[int, ...], width: int = 64, norm: str = "batch",
        vbn_ref_size: int = VBN_REF_SIZE,
    ):
        super().__init__()
        check_choice(norm, G_NORMS, "DCGAN generator norm")
        channels, s0, n_blocks = image_geometry(data_shape)
        if z_dim < 1 or width < 1:
            raise ValueError(f"need z_dim >= 1 and width >= 1, got {z_dim}, {width}")
        self.z_dim = z_dim
        self.data_shape = tuple(data_shape)
        self.register_buffer("ref_z", reference_buffer(norm, z_dim, vbn_ref_size))  # (R, z_dim) or None
        bias = norm == "none"  # a bias before a norm layer is cancelled by its mean subtraction
        ch = width * 2 ** (n_blocks - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, ch, s0, 1, 0, bias=bias),  # (B, z_dim, 1, 1) -> (B, ch, s0, s0)
            norm2d(norm, ch, vbn_ref_size),
            nn.ReLU(),
        ]
        for _ in range(n_blocks - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=bias), norm2d(norm, ch // 2, vbn_ref_size), nn.ReLU()
            ]
            ch //= 2  # each block: (B, ch, s, s) -> (B, ch / 2, 2s, 2s)
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]  # -> (B, C, H, W)
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, z: Tensor) -> Tensor:
        """Map latents (B, z_dim) to images (B, C, H, W) in [-1, 1]."""
        check_data_shape(z, (self.z_dim,), "DCGANGenerator")
        zr = prepend_reference(z, self.ref_z)  # (R + B, z_dim), R = 0 without VBN
        out = self.net(zr.view(zr.shape[0], self.z_dim, 1, 1))  # (R + B, z_dim, 1, 1) -> (R + B, C, H, W)
        return out[out.shape[0] - z.shape[0]:]  # (B, C, H, W): drop the reference rows


class DCGANDiscriminator(nn.Module):
    """Stride-2 Conv blocks down to an s0 x s0 map = features -> Linear(F, 1) logits.

    Mirrors DCGANGenerator, e.g. for 64x64: (C, 64, 64) -> (w, 32, 32) -> (2w, 16, 16) ->
    (4w, 8, 8) -> (8w, 4, 4). The first block has no norm (Radford et al.: normalizing D's input
    layer made training unstable). The head is a Linear over the flattened map, the same map as
    the paper's final s0 x s0 convolution.

    Args:
        data_shape: (C, H, W) with H = W in (28, 32, 64).
        width: channels of the first (largest) map.
        norm: "batch", "none" or "layer" (GroupNorm(1, ch), which does not mix examples).
        num_outputs: 1 logit for a GAN; K class logits for the semi-supervised K+1 classifier.

    Attributes:
        feature_dim: size of `features(x)`, channels * s0 * s0 of the last map.
        head: the final Linear(feature_dim, num_outputs).
    """

    def __init__(self, data_shape: tuple[int, ...], width: int = 64, norm: str = "batch", num_outputs: int = 1):
        super().__init__()
        check_choice(norm, D_NORMS, "DCGAN discriminator norm")
        channels, s0, n_blocks = image_geometry(data_shape)
        if width < 1 or num_outputs < 1:
            raise ValueError(f"need width >= 1 and num_outputs >= 1, got {width}, {num_outputs}")
        self.data_shape = tuple(data_shape)
        bias = norm == "none"
        ch = width
        layers: list[nn.Module] = [nn.Conv2d(channels, ch, 4, 2, 1), nn.LeakyReLU(0.2)]  # (B, w, H/2, W/2)
        for _ in range(n_blocks - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias), norm2d(norm, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2  # each block: (B, ch, s, s) -> (B, 2ch, s / 2, s / 2)
        layers.append(nn.Flatten())  # (B, ch, s0, s0) -> (B, ch * s0 * s0)
        self.body = nn.Sequential(*layers)
        self.feature_dim = ch * s0 * s0
        self.head = nn.Linear(self.feature_dim, num_outputs)
        self.apply(init_dcgan_weights)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features: (B, C, H, W) -> (B, feature_dim)."""
        check_data_shape(x, self.data_shape, "DCGANDiscriminator")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Raw logits (higher = more real): (B, C, H, W) -> (B,) (or (B, num_outputs) when num_outputs > 1)."""
        return self.head(self.features(x)).squeeze(1)
