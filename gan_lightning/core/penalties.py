"""Discriminator regularizers and constraints, each a small object with one call signature.

Penalties are ``nn.Module``s called as ``penalty(module, real, fake) -> scalar`` and summed into
the loss of the player they regularize; any state they keep lives in buffers, so it is saved in
checkpoints. Constraints are called as ``constraint(network)`` right after an optimizer step.
A technique that is off is simply not in the list.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class TwoPlayers(Protocol):
    """What a penalty reads from the module it is called with (``modules.GAN`` is one)."""

    generator: nn.Module
    discriminator: nn.Module

    def discriminate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """D's logits (B,) on ``x`` and its features, through the module's one D call site."""


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

    def forward(self, module: TwoPlayers, real: Tensor, fake: Tensor) -> Tensor:
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
            clip = min(self.clip, torch.finfo(p.dtype).max)  # a clip beyond the dtype's range clips nothing
            p.clamp_(-clip, clip)

    def __repr__(self) -> str:
        return f"WeightClip(clip={self.clip})"


class HistoricalAveraging(nn.Module):
    """Historical averaging (Salimans et al. 2016, sec. 3.3): weight * ||theta - (1/t) sum_{i<=t} theta[i]||^2.

    theta are the parameters of one player, read at each call from ``module.discriminator``
    (player "d") or ``module.generator`` (player "g"); add the penalty to that player's list
    (``d_penalties`` or ``g_penalties``), so t counts that player's updates. The paper gives
    no weight, and the released code does not implement the technique.

    Reading of the paper: theta[t] is the current parameters, so each call first adds them to
    the running mean (avg += (theta - avg) / t) and then penalizes the distance to it. The first
    call therefore gives 0, and at every call the gradient is 2 weight (theta - avg) with the
    average held fixed (a buffer, no gradient), pulling theta back towards its own history.

    The running mean (a flat vector of all parameters, in parameter order) and t are buffers,
    created from the network at construction, so a checkpoint saves them and
    ``load_state_dict`` restores them into a freshly built penalty when a run resumes.

    Args:
        weight: the penalty's weight; > 0 (a weight of 0 means: do not build it).
        network: the player's network, to size the buffers (not kept as a submodule).
        player: "d" or "g": which network of the module is penalized at each call.

    Raises:
        ValueError: on a non-positive weight, an unknown player, or a network whose parameter
            count differs from the buffers' at call time.

    Example:
        >>> d = nn.Linear(3, 1)
        >>> penalty = HistoricalAveraging(0.1, d, player="d")  # GAN(..., d_penalties=[penalty])
    """

    def __init__(self, weight: float, network: nn.Module, player: str = "d") -> None:
        super().__init__()
        if weight <= 0:
            raise ValueError(f"historical averaging weight must be > 0, got {weight}")
        if player not in ("d", "g"):
            raise ValueError(f"historical averaging player must be 'd' or 'g', got {player!r}")
        self.weight, self.player = weight, player
        flat = torch.cat([p.detach().reshape(-1) for p in network.parameters()])  # (P,)
        self.register_buffer("average", torch.zeros_like(flat))  # (P,): (1/t) sum_{i<=t} theta[i]
        self.register_buffer("count", torch.zeros((), dtype=torch.long))  # t

    def forward(self, module: TwoPlayers, real: Tensor, fake: Tensor) -> Tensor:
        network = module.discriminator if self.player == "d" else module.generator
        theta = torch.cat([p.reshape(-1) for p in network.parameters()])  # (P,), with grad
        if theta.numel() != self.average.numel():
            raise ValueError(
                f"historical averaging was built for {self.average.numel()} parameters of player "
                f"{self.player!r}, the network has {theta.numel()}"
            )
        with torch.no_grad():
            self.count += 1
            self.average += (theta.detach().to(self.average.dtype) - self.average) / self.count
        return self.weight * (theta - self.average).pow(2).sum()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, player={self.player!r}, parameters={self.average.numel()}"
