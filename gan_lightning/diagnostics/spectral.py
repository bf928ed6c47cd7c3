"""The largest singular value of each of D's weight layers: ~1 under spectral normalization
(Miyato et al. 2018), the raw scale of the weights without it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_lightning.layers.spectral_norm import effective_weight, weight_layers


@torch.no_grad()
def largest_singular_values(net: nn.Module) -> dict[str, Tensor]:
    """sigma_max of the weight each Linear and convolution of ``net`` computes with, measured exactly.

    The weight is the effective one (W / sigma_estimate for a spectrally normalized layer, read with
    the current u and v and no power iteration, so the run is unchanged; the plain W otherwise),
    flattened to (out, in * k * k) as spectral norm sees it, and measured by
    ``torch.linalg.matrix_norm(ord=2)`` (an SVD), not by the power method's own estimate: with
    spectral norm the value says how far the one-step estimate lags behind the weights (1 exactly
    when it has caught up). It costs an SVD per layer and stays on the device (no host sync).

    Args:
        net: the discriminator.

    Returns:
        ``{layer name relative to net: 0-d float32 tensor}``, e.g. ``{"body.0": ..., "head": ...}``.
    """
    return {name: torch.linalg.matrix_norm(effective_weight(layer).flatten(1).float(), ord=2)
            for name, layer in weight_layers(net)}
