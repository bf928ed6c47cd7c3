"""Discriminator regularizers and constraints, each a small object with one call signature.

Penalties are ``nn.Module``s called as ``penalty(module, real, fake) -> scalar`` and summed into
the loss of the player they regularize; any state they keep lives in buffers, so it is saved in
checkpoints. Constraints are called as ``constraint(network)`` right after an optimizer step.
A technique that is off is simply not in the list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from gan_lightning.modules.gan import GAN


class GradientPenalty(nn.Module):
    """WGAN-GP two-sided gradient penalty (Gulrajani et al. 2017, eq. 3).

    weight * E_xhat[(||grad_xhat D(xhat)||_2 - target)^2], xhat = e x + (1 - e) G(z), e ~ U[0, 1]
    drawn per example. D is called through ``module.discriminate`` so the penalty sees D exactly
    as the loss does.

    Args:
        weight: lambda; the paper uses 10.
        target: the norm the gradient is pushed towards (1 for WGAN-GP).

    Raises:
        ValueError: if weight is not positive.
    """

    def __init__(self, weight: float = 10.0, target: float = 1.0) -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"gradient penalty weight must be > 0, got {weight}")
        self.weight = weight
        self.target = target

    def forward(self, module: "GAN", real: Tensor, fake: Tensor) -> Tensor:
        fake = fake.detach()
        n = min(len(real), len(fake))
        real, fake = real[:n], fake[:n]
        eps = torch.rand((n,) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)  # (B, 1, ...)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        logits, _ = module.discriminate(mixed)  # (B,)
        (grad,) = torch.autograd.grad(logits.sum(), mixed, create_graph=True)
        norms = grad.flatten(1).norm(2, dim=1)  # (B,)
        return self.weight * (norms - self.target).pow(2).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, target={self.target}"


class WeightClip:
    """Clip every parameter of a network to [-c, c] after each step (WGAN, Arjovsky et al. 2017, Alg. 1).

    Args:
        clip: c > 0; the paper uses 0.01.

    Raises:
        ValueError: if clip is not positive.
    """

    def __init__(self, clip: float = 0.01) -> None:
        if clip <= 0:
            raise ValueError(f"weight clip must be > 0, got {clip}")
        self.clip = clip

    @torch.no_grad()
    def __call__(self, network: nn.Module) -> None:
        for p in network.parameters():
            p.clamp_(-self.clip, self.clip)

    def __repr__(self) -> str:
        return f"WeightClip(clip={self.clip})"
