"""Spectral normalization of a discriminator's weights (Miyato et al. 2018, "Spectral Normalization for
Generative Adversarial Networks", arXiv 1802.05957), with torch's own parametrization.

Each weight W of a Linear or convolution is used as W / sigma(W), sigma(W) its largest singular value
(eq. 8), estimated by one step of the power method per forward pass from vectors u, v kept between
steps (Algorithm 1). For a convolution, W is its kernel flattened to (out_channels, in_channels * k * k),
as in the paper; the largest singular value of the convolution as an operator can differ from it.

What is wrapped: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` of the network (:data:`WEIGHT_LAYERS`),
the head included. Not wrapped: normalization layers' scales, and minibatch discrimination's tensor T,
which that layer normalizes column by column itself (weight norm, so any scale put on it would be divided
out again); the Linear after it in the head is wrapped.

What conflicts: a weight that is already parametrized (weight norm: a second normalization of the same
weights, whose scale g spectral norm would divide out) and a scale-invariant normalization layer (batch,
layer, group, instance or virtual batch norm): norm(W x / sigma) = norm(W x), so spectral norm would do
nothing for the layers such a norm follows. Miyato et al. compare spectral norm *with* these
normalizations, as alternatives; their D has none.

State: the parametrization's ``original`` weight (the trained parameter) and its ``_u``, ``_v`` buffers are
in ``state_dict`` (``<layer>.parametrizations.weight.original``, ``...weight.0._u``), so checkpoints and an
exact resume keep the power iteration's state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from gan_lightning.layers.vbn import VirtualBatchNorm

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Normalizations whose output does not change when their input is scaled: they cancel spectral norm.
SCALE_INVARIANT: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
    nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm, VirtualBatchNorm,
)
N_POWER_ITERATIONS = 1  # per forward pass, as in the paper (Algorithm 1)


def weight_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name relative to ``net``, layer) of every Linear and convolution of ``net`` (:data:`WEIGHT_LAYERS`),
    in ``named_modules`` order: the layers :func:`apply_spectral_norm` wraps, wrapped or not."""
    return [(name, m) for name, m in net.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def is_spectrally_normalized(layer: nn.Module) -> bool:
    """True for a layer whose weight has torch's spectral-norm parametrization."""
    if not parametrize.is_parametrized(layer, "weight"):
        return False
    # torch exports spectral_norm() but not the class of the parametrization it registers.
    return any(type(p).__name__ == "_SpectralNorm" for p in layer.parametrizations.weight)


def apply_spectral_norm(net: nn.Module, n_power_iterations: int = N_POWER_ITERATIONS) -> int:
    """Wrap the weight of every Linear and convolution of ``net`` in spectral normalization, in place.

    ``torch.nn.utils.parametrizations.spectral_norm`` starts u and v with 15 power iterations from
    random vectors (drawn from torch's global generator) and runs ``n_power_iterations`` per forward
    pass in training mode; in eval mode it uses them as they are.

    Args:
        net: the discriminator (any module).
        n_power_iterations: power iterations per forward pass (the paper: 1).

    Returns:
        The number of layers wrapped (>= 1).

    Raises:
        ValueError: ``net`` has no Linear or convolution, one of their weights is already parametrized
            (weight norm), or ``net`` has a scale-invariant normalization layer (see the module docstring).

    Example:
        >>> d = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        >>> apply_spectral_norm(d)
        2
    """
    layers = weight_layers(net)
    if not layers:
        raise ValueError(f"{type(net).__name__} has no Linear or convolution layer to normalize")
    taken = [name for name, m in layers if parametrize.is_parametrized(m, "weight")]
    if taken:
        raise ValueError(f"the weight of {taken[0]!r} of {type(net).__name__} is already parametrized "
                         f"(weight norm): spectral norm would divide out its scale")
    norms = [(name, m) for name, m in net.named_modules() if isinstance(m, SCALE_INVARIANT)]
    if norms:
        name, m = norms[0]
        raise ValueError(f"{type(net).__name__} has a {type(m).__name__} ({name!r}), whose output does not "
                         f"change when its input is scaled: it cancels spectral norm; use no normalization layer")
    for _, layer in layers:
        spectral_norm(layer, n_power_iterations=n_power_iterations)
    return len(layers)


@torch.no_grad()
def effective_weight(layer: nn.Module) -> Tensor:
    """The weight ``layer`` computes with (W / sigma with spectral norm), without a power iteration.

    A parametrization in training mode would run one step of the power method when the weight is
    read, changing u and v (and so the run); this reads it with the parametrizations in eval mode
    (the current u and v) and puts their mode back.

    Args:
        layer: a module with a ``weight``, parametrized or not.

    Returns:
        The weight, detached, of the layer's own shape.
    """
    if not parametrize.is_parametrized(layer, "weight"):
        return layer.weight.detach()
    chain = layer.parametrizations.weight
    modes = [m.training for m in chain.modules()]
    chain.eval()
    try:
        return layer.weight.detach()
    finally:
        for m, mode in zip(chain.modules(), modes):
            m.training = mode
