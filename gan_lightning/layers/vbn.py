"""Virtual batch normalization (Salimans et al. 2016, sec. 3.5): batch norm against a fixed
reference batch, so an example's output does not depend on the rest of its minibatch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

VBN_SEED = 4321  # seed of the reference latents: a fixed batch, independent of the run's RNG stream


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
