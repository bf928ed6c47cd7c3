"""Weight normalization (Salimans & Kingma 2016), as the reference MNIST networks of Salimans et al.
2016 use it, with their data-dependent initialization.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def wn_linear(in_features: int, out_features: int, bias: bool = True, scale: float | None = None) -> nn.Linear:
    """A Linear layer with weight normalization (Salimans & Kingma 2016): W_k = g_k v_k / ||v_k||.

    Uses ``torch.nn.utils.parametrizations.weight_norm`` (dim 0: one g per output unit); the
    parameters are ``parametrizations.weight.original0`` (g, (out, 1)) and ``.original1`` (v).

    Args:
        in_features: input size.
        out_features: output size.
        bias: learn a bias.
        scale: initial g of every output unit. None keeps PyTorch's choice g = ||v||, the same
            function as the plain Linear; the improved-gan reference starts from g = 1 (unit-norm
            rows, so each output has about the input's RMS as its scale).
    """
    layer = weight_norm(nn.Linear(in_features, out_features, bias=bias), dim=0)
    if scale is not None:
        with torch.no_grad():
            layer.parametrizations.weight.original0.fill_(scale)
    return layer


def is_weight_normalized(layer: nn.Module) -> bool:
    """True for a Linear made by :func:`wn_linear` (a weight-norm parametrization with g and v); False for
    other parametrizations of the weight, such as spectral norm (one ``original``)."""
    parametrizations = getattr(layer, "parametrizations", None)
    return (isinstance(layer, nn.Linear) and parametrizations is not None and "weight" in parametrizations
            and hasattr(parametrizations.weight, "original1"))


@torch.no_grad()
def init_weight_norm_from_data(net: nn.Module, x: Tensor, forward: Callable[[Tensor], Tensor] | None = None) -> int:
    """Data-dependent initialization of weight normalization (Salimans & Kingma 2016, sec. 3).

    Every weight-normalized Linear of ``net`` (:func:`is_weight_normalized`), in the order of
    ``net.modules()`` (the order of the forward pass for the networks here), gets

        g <- g / std,  b <- (b - mean) / std

    with ``mean`` and ``std`` (per output unit) of its output on ``x``, measured after the layers
    before it were initialized, so each of its units starts with zero mean and unit variance on
    the data. The improved-gan reference code initializes its discriminator this way on 500
    training images. One forward pass per layer; call it in the mode the statistics should be
    measured in (eval: no noise layers).

    Args:
        net: the network; changed in place.
        x: (N, *input_shape) a batch of inputs, N >= 2.
        forward: how to run ``net`` on ``x`` (default ``net(x)``), e.g. features then head.

    Returns:
        The number of layers initialized (0 when ``net`` has no weight-normalized Linear).
    """
    if x.shape[0] < 2:
        raise ValueError(f"data-dependent init needs a batch of at least 2 inputs, got {x.shape[0]}")
    run = forward if forward is not None else net
    layers = [m for m in net.modules() if is_weight_normalized(m)]
    for layer in layers:
        captured: list[Tensor] = []
        handle = layer.register_forward_hook(lambda m, i, out: captured.append(out))
        try:
            run(x)
        finally:
            handle.remove()
        out = captured[0].flatten(0, -2)  # (N, out_features)
        mean, std = out.mean(0), out.std(0, unbiased=False).clamp_min(1e-6)  # (out_features,)
        g = layer.parametrizations.weight.original0  # (out_features, 1)
        g.div_(std.view(-1, *([1] * (g.dim() - 1))))
        if layer.bias is not None:
            layer.bias.sub_(mean).div_(std)
    return len(layers)

