"""Layers from Salimans et al. 2016, "Improved Techniques for Training GANs" (arXiv 1606.03498).

- :class:`MinibatchDiscrimination` (sec. 3.2): D sees how close each example is to the others.
- :class:`VirtualBatchNorm` (sec. 3.5): batch norm against a fixed reference batch, so an
  example's output does not depend on the rest of its minibatch.
- :class:`GaussianNoise` and :func:`wn_linear`: the building blocks of the reference MNIST
  networks (Gaussian noise in D, weight normalization of Salimans & Kingma 2016).

Each op is a function plus a thin module where that helps; the reference code is
openai/improved-gan (``mnist_svhn_cifar10/nn.py`` and ``imagenet/ops.py``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

VBN_SEED = 4321  # seed of the reference latents: a fixed batch, independent of the run's RNG stream


# -- minibatch discrimination -----------------------------------------------------------------
def minibatch_features(f: Tensor, T: Tensor) -> Tensor:
    """o(x_i)_b = sum_{j != i} exp(-||M_{i,b} - M_{j,b}||_1), M_i = f(x_i) T (Salimans et al. 2016, sec. 3.2).

    The self-pair (c_b(x_i, x_i) = exp(0) = 1 for every i) is left out, as in the reference code, so
    a batch of one gives o = 0 and the output only carries information about the *other* examples.

    Args:
        f: (N, A) features of one batch (real and fake batches are separate calls).
        T: (A, B, C) the tensor T of the paper.

    Returns:
        (N, B) closeness of each example to the rest of its batch, per kernel b.
    """
    m = torch.einsum("na,abc->bnc", f, T)  # (B, N, C): M_{i,b}, kernel-major for cdist
    dist = torch.cdist(m, m, p=1)  # (B, N, N): ||M_{i,b} - M_{j,b}||_1
    self_pair = torch.eye(f.shape[0], dtype=torch.bool, device=f.device)  # (N, N)
    c = torch.exp(-dist).masked_fill(self_pair, 0.0)  # (B, N, N): c_b(x_i, x_j), 0 on i == j
    return c.sum(dim=2).transpose(0, 1)  # (B, N) -> (N, B)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination, Salimans et al. 2016, sec. 3.2: [f(x_i), o(x_i)] of size A + B.

    M_i = f(x_i) T with T in R^{A x B x C}; c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1);
    o(x_i)_b = sum_{j != i} c_b(x_i, x_j) (+ bias_b). D calls real and generated batches separately
    (see GAN.discriminate), so each batch is compared with itself only, as the paper prescribes.

    Like the reference code (``MinibatchLayer``), T is weight-normalized by default: each column
    T[:, b, c] has norm exp(log_scale[b, c]) (log_scale starts at 0), which keeps the distances
    independent of the scale of T and of the feature size A; and a learned bias (init 0) is added
    to o. Unlike it, there is no data-dependent initialization (the reference rescales T so the
    nearest-neighbour L1 distance starts near 2 and sets the bias to -mean o on a first batch).

    Args:
        in_features: A, the size of f(x).
        kernels: B, the number of kernels (the reference uses 100).
        kernel_dim: C, the dimension of each kernel (the reference uses 5).
        weight_norm: normalize the columns of T as the reference code does (else T is used as is).
        bias: add a learned bias to o.

    Attributes:
        out_features: A + B.
        T: the effective (A, B, C) tensor T (after weight normalization).

    Raises:
        ValueError: on a non-positive size, or an input that is not (N, A).

    Example:
        >>> mbd = MinibatchDiscrimination(16, kernels=8, kernel_dim=3)
        >>> mbd(torch.randn(4, 16)).shape
        torch.Size([4, 24])
    """

    def __init__(
        self, in_features: int, kernels: int = 100, kernel_dim: int = 5, weight_norm: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        if min(in_features, kernels, kernel_dim) < 1:
            raise ValueError(
                f"minibatch discrimination needs in_features, kernels, kernel_dim >= 1, "
                f"got {in_features}, {kernels}, {kernel_dim}"
            )
        self.in_features, self.kernels, self.kernel_dim = in_features, kernels, kernel_dim
        self.out_features = in_features + kernels
        # Columns of norm ~1 either way, so both variants start at the same scale.
        self.weight = nn.Parameter(torch.randn(in_features, kernels, kernel_dim) / math.sqrt(in_features))
        self.log_scale = nn.Parameter(torch.zeros(kernels, kernel_dim)) if weight_norm else None
        self.bias = nn.Parameter(torch.zeros(kernels)) if bias else None

    @property
    def T(self) -> Tensor:
        """The (A, B, C) tensor of the paper: ``weight``, column-normalized when weight_norm is on."""
        if self.log_scale is None:
            return self.weight
        norms = self.weight.norm(dim=0).clamp_min(1e-12)  # (B, C): ||T[:, b, c]||_2
        return self.weight * (self.log_scale.exp() / norms).unsqueeze(0)  # (A, B, C)

    def forward(self, f: Tensor) -> Tensor:
        """(N, A) features -> (N, A + B) features with the minibatch features appended."""
        if f.dim() != 2 or f.shape[1] != self.in_features:
            raise ValueError(
                f"MinibatchDiscrimination expects features of shape (N, {self.in_features}), got {tuple(f.shape)}"
            )
        o = minibatch_features(f, self.T)  # (N, B)
        if self.bias is not None:
            o = o + self.bias
        return torch.cat([f, o], dim=1)  # (N, A + B)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, kernels={self.kernels}, kernel_dim={self.kernel_dim}, "
            f"weight_norm={self.log_scale is not None}, bias={self.bias is not None}"
        )


def add_minibatch_discrimination(
    discriminator: nn.Module, kernels: int = 100, kernel_dim: int = 5, num_outputs: int = 1
) -> nn.Module:
    """Replace D's head by [MinibatchDiscrimination -> Linear(feature_dim + kernels, num_outputs)].

    ``features(x)`` is untouched, so feature matching still sees D's penultimate features; the
    minibatch features only feed the logit. Any noise layer the old head held (improved_mnist's
    last GaussianNoise) is dropped with it.

    The new Linear's weights on o start at 0: o lies in [0, N - 1] and starts near N - 1 when
    features are close (a logit offset of several units at batch 64), so D starts from a plain
    linear head on f and learns how much to use o (its gradient, o * dL/dlogit, is not 0). The
    reference code instead shifts o by a bias set from a first batch (data-dependent init),
    which would differ between DDP ranks.

    Args:
        discriminator: a network with ``feature_dim`` and ``head`` (see gan_lightning.networks).
        kernels: B of :class:`MinibatchDiscrimination`.
        kernel_dim: C of :class:`MinibatchDiscrimination`.
        num_outputs: logits of the new head (1 for a GAN, K for the semi-supervised D).

    Returns:
        The same discriminator, modified in place.
    """
    a = int(discriminator.feature_dim)
    linear = nn.Linear(a + kernels, num_outputs)
    with torch.no_grad():
        linear.weight[:, a:] = 0.0  # the columns that read o
    # (N, A) -> (N, A + B) -> (N, num_outputs)
    discriminator.head = nn.Sequential(MinibatchDiscrimination(a, kernels, kernel_dim), linear)
    return discriminator


# -- virtual batch normalization --------------------------------------------------------------
def reference_latents(ref_size: int, z_dim: int, seed: int = VBN_SEED) -> Tensor:
    """The fixed reference batch of latents of virtual batch norm: (ref_size, z_dim) ~ N(0, I).

    Drawn from its own seeded generator, so it is the same for every run and leaves the global
    RNG stream alone; a generator keeps it in a buffer, so checkpoints carry it.
    """
    if ref_size < 1 or z_dim < 1:
        raise ValueError(f"need ref_size >= 1 and z_dim >= 1, got {ref_size}, {z_dim}")
    return torch.randn(ref_size, z_dim, generator=torch.Generator().manual_seed(seed))


def virtual_batch_norm(x: Tensor, ref_size: int, eps: float = 1e-5) -> Tensor:
    """Normalize (R + N, C, *S) activations whose first R rows come from the reference batch.

    Salimans et al. 2016, sec. 3.5, with the statistics of the reference code (imagenet/ops.py,
    ``VBNL``): the reference rows use the reference moments only; example i uses
        mean_i = 1/(R+1) E_S[x_i] + R/(R+1) E_{ref,S}[x],
        sq_i   = 1/(R+1) E_S[x_i^2] + R/(R+1) E_{ref,S}[x^2],   var_i = sq_i - mean_i^2,
    i.e. the moments of the reference batch with x_i added, over the spatial positions S too.
    The reference moments are recomputed from the current activations at every call, and
    gradients flow through them, as in the reference code.

    Args:
        x: (R + N, C) or (R + N, C, H, W), the reference rows first.
        ref_size: R.
        eps: added to the variance.

    Returns:
        Normalized x, same shape, no affine transform.
    """
    if x.dim() < 2 or x.shape[0] <= ref_size:
        raise ValueError(
            f"virtual batch norm expects the {ref_size} reference rows in front of at least one example "
            f"(shape (R + N, C, ...)), got {tuple(x.shape)}; build the generator with norm='vbn' so it adds them"
        )
    h = x.reshape(x.shape[0], x.shape[1], -1)  # (R + N, C, L), L = H * W or 1
    mean = h.mean(dim=2)  # (R + N, C): per-example moments over space
    sq = h.pow(2).mean(dim=2)  # (R + N, C)
    ref_mean, ref_sq = mean[:ref_size].mean(dim=0), sq[:ref_size].mean(dim=0)  # (C,), (C,)
    new = 1.0 / (ref_size + 1.0)
    mean = torch.cat([ref_mean.expand(ref_size, -1), new * mean[ref_size:] + (1 - new) * ref_mean])  # (R + N, C)
    sq = torch.cat([ref_sq.expand(ref_size, -1), new * sq[ref_size:] + (1 - new) * ref_sq])  # (R + N, C)
    var = (sq - mean.pow(2)).clamp_min(0.0)  # E[x^2] - E[x]^2 can dip below 0 by rounding
    out = (h - mean.unsqueeze(2)) * torch.rsqrt(var + eps).unsqueeze(2)  # (R + N, C, L)
    return out.view_as(x)


class VirtualBatchNorm(nn.Module):
    """Virtual batch normalization (Salimans et al. 2016, sec. 3.5) for (B, C) or (B, C, H, W) inputs.

    Every input must carry ``ref_size`` rows of the reference batch in front (the generator built
    with ``norm="vbn"`` prepends its fixed reference latents and drops those rows from its output;
    see :func:`reference_latents`). See :func:`virtual_batch_norm` for the statistics, then
    ``gamma * x_hat + beta`` per channel (the reference code parametrizes gamma as exp(driver);
    a plain gamma initialized at 1 is the same function at the start). There are no running
    statistics: train and eval mode compute the same function.

    Args:
        num_features: C.
        ref_size: R, the rows of the reference batch in front of every input.
        eps: added to the variance.

    Raises:
        ValueError: on a non-positive size, or an input without the reference rows.
    """

    def __init__(self, num_features: int, ref_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_features < 1 or ref_size < 1:
            raise ValueError(
                f"VirtualBatchNorm needs num_features >= 1 and ref_size >= 1, got {num_features}, {ref_size}"
            )
        self.num_features, self.ref_size, self.eps = num_features, ref_size, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"VirtualBatchNorm expects (B, {self.num_features}, ...) inputs, got {tuple(x.shape)}")
        shape = (1, -1) + (1,) * (x.dim() - 2)  # broadcast over (B, C, *S)
        return virtual_batch_norm(x, self.ref_size, self.eps) * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, ref_size={self.ref_size}, eps={self.eps}"


def prepend_reference(z: Tensor, ref_z: Tensor | None) -> Tensor:
    """[ref_z; z]: (R + B, z_dim), or z itself when there is no reference batch (no VBN)."""
    return z if ref_z is None else torch.cat([ref_z.to(z.dtype), z])


# -- building blocks of the reference MNIST networks ------------------------------------------
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
    """True for a Linear made by :func:`wn_linear` (a weight-norm parametrization with g and v)."""
    parametrizations = getattr(layer, "parametrizations", None)
    return isinstance(layer, nn.Linear) and parametrizations is not None and "weight" in parametrizations


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


__all__ = [
    "MinibatchDiscrimination",
    "add_minibatch_discrimination",
    "minibatch_features",
    "VirtualBatchNorm",
    "virtual_batch_norm",
    "reference_latents",
    "prepend_reference",
    "GaussianNoise",
    "gaussian_noise",
    "wn_linear",
    "is_weight_normalized",
    "init_weight_norm_from_data",
]
