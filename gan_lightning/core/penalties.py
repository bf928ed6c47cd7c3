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

from gan_lightning.core.noise import SCHEDULES, Schedule, make_schedule
from gan_lightning.torch_utils import host_value


class TwoPlayers(Protocol):
    """What a penalty reads from the module it is called with (``modules.GAN`` is one)."""

    generator: nn.Module
    discriminator: nn.Module

    def discriminate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """D's logits (B,) on ``x`` and its features, through the module's one D call site."""


class Scheduled(TwoPlayers, Protocol):
    """A module that also counts its G steps as a Python int (``modules.GAN`` does): what an
    annealed penalty reads, with no device read."""

    g_step_count: int


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


def input_gradient_sq_norms(module: TwoPlayers, x: Tensor) -> tuple[Tensor, Tensor]:
    """D's logits on ``x`` and the squared norm of their input gradient, per example, with the graph
    kept so that a penalty of them trains D (double backward).

    Args:
        module: calls D through ``module.discriminate`` (instance noise included, as in the loss).
        x: (B, *data_shape) samples; detached here, so no gradient reaches G.

    Returns:
        logits (B,) and ||grad_x f(x)||^2 (B,), f = D's logit.
    """
    x = x.detach().requires_grad_(True)
    logits, _ = module.discriminate(x)  # (B,)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)  # (B, *data_shape)
    return logits, grad.flatten(1).pow(2).sum(1)  # (B,), (B,)


class ZeroCenteredGradientPenalty(nn.Module):
    """R1 or R2 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", sec. 4.1).

    R1 = (gamma / 2) E_{x~Pr}[||grad_x f(x)||^2] on real samples, R2 the same on generated ones
    (detached), with f = D's logit; both push D's gradient towards 0, where the Dirac-GAN converges.

    Lazy regularization (Karras et al. 2020, StyleGAN2, sec. 3.1): with ``every`` = N > 1 the
    penalty is computed only at the N-th, 2N-th, ... call (one call per D step) with its weight
    multiplied by N, so its average weight is unchanged; the other calls return 0 without calling D.
    The call count is a Python int (no device read decides a step) mirrored in the buffer ``calls``,
    which checkpoints save, so a resumed run regularizes at the same steps as one that never stopped.

    Args:
        weight: gamma > 0 (Mescheder et al. use 10 for their image experiments).
        samples: "real" (R1) or "fake" (R2).
        every: N >= 1, the lazy-regularization interval (StyleGAN2 uses 16 for R1).

    Raises:
        ValueError: a non-positive or non-finite weight, another ``samples``, or ``every`` < 1.

    Example:
        >>> r1 = ZeroCenteredGradientPenalty(10.0, "real", every=16)  # GAN(..., d_penalties=[r1])
    """

    def __init__(self, weight: float, samples: str = "real", every: int = 1) -> None:
        super().__init__()
        if not (weight > 0 and weight < float("inf")):
            raise ValueError(f"R1/R2 weight must be a finite number > 0, got {weight}")
        if samples not in ("real", "fake"):
            raise ValueError(f"R1/R2 samples must be 'real' (R1) or 'fake' (R2), got {samples!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"lazy regularization interval must be an integer >= 1, got {every!r}")
        self.weight, self.samples, self.every = weight, samples, every
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))  # D steps seen
        self._calls = (0, self.calls._version)  # (calls, the version of the buffer it matches): host_value

    @property
    def call_count(self) -> int:
        """Calls so far as a Python int; read once from ``calls`` after it changed from outside (a load)."""
        self._calls = host_value(self.calls, self._calls)
        return self._calls[0]

    def forward(self, module: TwoPlayers, real: Tensor, fake: Tensor) -> Tensor:
        count = self.call_count + 1
        self.calls += 1
        self._calls = (count, self.calls._version)
        if count % self.every:
            return real.new_zeros(())
        _, sq_norms = input_gradient_sq_norms(module, real if self.samples == "real" else fake)  # (B,)
        return (self.weight * self.every / 2) * sq_norms.mean()

    def extra_repr(self) -> str:
        name = "R1" if self.samples == "real" else "R2"
        return f"{name}, weight={self.weight}, every={self.every}, calls={self.call_count}"


# The schedules of core.noise that anneal a weight by G steps alone (adaptive reads D's accuracy).
GAMMA_SCHEDULES: tuple[str, ...] = tuple(name for name, cls in SCHEDULES.items() if not cls.needs_acc)
ROTH_FINAL_FACTOR = 0.01  # Roth et al. 2017: gamma_t = gamma_0 * 0.01^(t / T)


class RothRegularizer(nn.Module):
    """The JS-GAN regularizer of Roth et al. 2017, "Stabilizing Training of Generative Adversarial
    Networks through Regularization" (eq. 9, Algorithm 1), for the BCE losses (D = sigmoid(f)).

    Omega = E_{x~Pr}[(1 - D(x))^2 ||grad_x f(x)||^2] + E_{x~Pg}[D(x)^2 ||grad_x f(x)||^2], f = D's
    logit, is added to D's loss as (gamma_t / 2) Omega: the analytic limit of instance noise
    (Arjovsky & Bottou 2017, sec. 3) for small noise. As in the authors' code, the gradient of the
    penalty flows through the weights D(x) as well as through the input-gradient norms.

    gamma_t follows ``schedule`` (one of core.noise's, its ``std`` being gamma_0) of the G-step count
    ``module.g_step_count``, a Python int: no device read, and no state of its own to save, since
    the module's ``g_steps`` buffer (in checkpoints) is that count. The paper anneals exponentially,
    gamma_0 = 2 to 0.01 gamma_0 over the run. A step where gamma_t is 0 returns 0 without calling D.

    Args:
        schedule: gamma_t as a function of G steps; not one that reads D's accuracy.

    Raises:
        ValueError: a schedule that needs D's accuracy (``Adaptive``).

    Example:
        >>> from gan_lightning.core.noise import Exponential
        >>> roth = RothRegularizer(Exponential(2.0, final_std=0.02, anneal_steps=10_000))
        >>> roth.gamma(5_000)  # 2 * 0.01^(1/2)
        0.2
    """

    def __init__(self, schedule: Schedule) -> None:
        super().__init__()
        if schedule.needs_acc:
            raise ValueError(f"Roth's gamma is annealed by G steps; valid schedules: {', '.join(GAMMA_SCHEDULES)}")
        self.schedule = schedule

    @classmethod
    def annealed(cls, schedule: str, gamma: float, final_gamma: float, anneal_steps: int) -> "RothRegularizer":
        """Build from flat config values: a schedule name of GAMMA_SCHEDULES, gamma_0, gamma_T and T (G steps).

        Raises:
            ValueError: an unknown schedule name (the message lists the valid ones) or bad values.
        """
        if schedule not in GAMMA_SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} of Roth's gamma; valid: {', '.join(GAMMA_SCHEDULES)}")
        return cls(make_schedule(schedule, gamma, final_gamma, anneal_steps, target_acc=0.5))  # target_acc: unused

    def gamma(self, g_steps: int) -> float:
        """gamma_t after ``g_steps`` G updates."""
        return float(self.schedule(g_steps, self.schedule.std))

    def forward(self, module: Scheduled, real: Tensor, fake: Tensor) -> Tensor:
        gamma = self.gamma(module.g_step_count)
        if gamma == 0:
            return real.new_zeros(())
        real_logits, real_sq = input_gradient_sq_norms(module, real)  # (B,), (B,)
        fake_logits, fake_sq = input_gradient_sq_norms(module, fake)  # (B,), (B,)
        # 1 - sigmoid(f) = sigmoid(-f), exact for large logits too
        omega = ((torch.sigmoid(-real_logits).pow(2) * real_sq).mean()
                 + (torch.sigmoid(fake_logits).pow(2) * fake_sq).mean())
        return (gamma / 2) * omega

    def extra_repr(self) -> str:
        return f"schedule={self.schedule!r}"
