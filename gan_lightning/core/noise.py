"""Instance noise on the discriminator's inputs and the schedules that anneal its std.

Arjovsky & Bottou 2017 ("Towards Principled Methods for Training GANs", sec. 3): when Pr and Pg
live on low-dimensional manifolds a perfect D exists and G's gradients vanish or explode. Adding
eps ~ N(0, sigma^2 I) to D's inputs makes Pr+eps and Pg+eps absolutely continuous (Thm 3.1), so
D* = P_{r+eps} / (P_{r+eps} + P_{g+eps}) is smooth and the generator gradient moves generated
points towards the data, weighted by the noise kernel (Thm 3.2). The noise must go on real AND
generated samples, and G is trained through the noisy sample g(z) + eps' (Cor. 3.2:
E[grad log(1 - D*(g(z) + eps'))] = 2 grad JSD(Pr+eps || Pg+eps)). Sigma is then annealed towards 0;
Sonderby et al. 2016 anneal it linearly (0.1 -> 0 for images in [0, 1], ~0.2 for [-1, 1]).

A schedule is a small frozen object called as ``schedule(step, sigma, real_acc) -> new sigma``:
``step`` counts generator updates, ``sigma`` is the current value and ``real_acc`` is D's accuracy
on real samples (only ``Adaptive`` reads it). ``InstanceNoise`` holds the current sigma as a Python
float (no GPU sync in ``forward``) and saves ``(step, sigma)`` in its ``state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gan_lightning.core.losses import says_real


def _check_std(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _progress(step: int, anneal_steps: int) -> float:
    """Fraction of the annealing done, in [0, 1]."""
    return min(max(step, 0) / anneal_steps, 1.0)


@dataclass(frozen=True)
class Schedule:
    """Base of all schedules. ``std`` is the starting sigma (the value at step 0)."""

    needs_acc: ClassVar[bool] = False  # True: update() must compute D's accuracy on real samples

    std: float

    def __post_init__(self) -> None:
        _check_std("std", self.std)

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """Fixed sigma, as in Salimans et al. 2016's reference code (std 0.3 on MNIST in [0, 1])."""

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        return float(self.std)


@dataclass(frozen=True)
class _Annealed(Schedule):
    """Goes from ``std`` at step 0 to ``final_std`` at ``anneal_steps`` and stays there.

    Args:
        std: sigma at step 0.
        final_std: sigma from ``anneal_steps`` on (usually 0).
        anneal_steps: generator steps the annealing takes (T).

    Raises:
        ValueError: a negative or non-finite std, or anneal_steps not an integer >= 1.
    """

    final_std: float = 0.0
    anneal_steps: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_std("final_std", self.final_std)
        _check_count("anneal_steps", self.anneal_steps)


@dataclass(frozen=True)
class Linear(_Annealed):
    """std + (final_std - std) * min(step / T, 1): Sonderby et al. 2016's instance noise annealing.

    Args and Raises, as for every annealed schedule: see ``_Annealed``.
    """

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        return self.std + (self.final_std - self.std) * _progress(step, self.anneal_steps)


@dataclass(frozen=True)
class Exponential(_Annealed):
    """Geometric interpolation std * (final_std / std)^min(step / T, 1), like Roth et al. 2017's
    gamma_t = gamma_0 * 0.01^(t / T).

    A geometric path cannot reach 0, so when ``final_std == 0`` the geometric part aims at a floor
    of 1e-3 * std and the schedule returns exactly 0 once step >= T (a last drop from 1e-3 * std).
    std must be > 0.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.std <= 0:
            raise ValueError(f"Exponential needs std > 0 (a geometric path from 0 stays 0), got {self.std!r}")

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        t = _progress(step, self.anneal_steps)
        if self.final_std == 0:
            if t >= 1:
                return 0.0
            return self.std * 1e-3**t  # floor 1e-3 * std: (floor / std) = 1e-3
        return self.std * (self.final_std / self.std) ** t


@dataclass(frozen=True)
class Cosine(_Annealed):
    """final_std + (std - final_std) * (1 + cos(pi * min(step / T, 1))) / 2: slow, fast, slow."""

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        t = _progress(step, self.anneal_steps)
        return self.final_std + (self.std - self.final_std) * (1 + math.cos(math.pi * t)) / 2


@dataclass(frozen=True)
class Step(_Annealed):
    """Piecewise constant: ``num_drops`` equal drops from std, reaching final_std at step T.

    Stage k = floor(num_drops * step / T), capped at num_drops, has sigma
    std + (final_std - std) * k / num_drops. E.g. T = 100, num_drops = 4: steps 0-24 std,
    25-49 std - d/4, 50-74 std - d/2, 75-99 std - 3d/4, >= 100 final_std (d = std - final_std).
    """

    num_drops: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_count("num_drops", self.num_drops)

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        k = min(max(step, 0) * self.num_drops // self.anneal_steps, self.num_drops)
        if k == self.num_drops:
            return float(self.final_std)  # exact, no rounding from the fraction
        return self.std + (self.final_std - self.std) * k / self.num_drops


@dataclass(frozen=True)
class Adaptive(Schedule):
    """Feedback on D's accuracy on real samples, like StyleGAN2-ADA's augmentation probability
    (Karras et al. 2020): more noise when D is too sure, less when it is not.

    sigma <- clamp(sigma + adjust * sign, 0, max_std), sign = +1 if real_acc > target_acc else -1;
    unchanged when real_acc is None. The default adjust = 0.001 per generator step moves sigma by
    0.5 in 500 steps of consistent feedback (ADA moves p by 1 in 500k images; ours counts steps).

    Args:
        std: starting sigma.
        target_acc: the accuracy on real samples to hold D at, in (0, 1); ADA uses 0.6.
        adjust: change of sigma per generator step.
        max_std: upper bound on sigma (1.0 is already heavy for images in [-1, 1]).

    Raises:
        ValueError: target_acc outside (0, 1), adjust <= 0, max_std <= 0 or std > max_std.
    """

    needs_acc: ClassVar[bool] = True

    target_acc: float = 0.6
    adjust: float = 1e-3
    max_std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.target_acc < 1:
            raise ValueError(f"target_acc must be in (0, 1), got {self.target_acc!r}")
        if not (math.isfinite(self.adjust) and self.adjust > 0):
            raise ValueError(f"adjust must be a finite number > 0, got {self.adjust!r}")
        if not (math.isfinite(self.max_std) and self.max_std > 0):
            raise ValueError(f"max_std must be a finite number > 0, got {self.max_std!r}")
        if self.std > self.max_std:
            raise ValueError(f"std must be <= max_std ({self.max_std}), got {self.std!r}")

    def __call__(self, step: int, sigma: float, real_acc: float | None = None) -> float:
        if real_acc is None:
            return sigma
        sigma = sigma + (self.adjust if real_acc > self.target_acc else -self.adjust)
        return min(max(sigma, 0.0), self.max_std)

    def on_device(self, sigma: Tensor, real_logits: Tensor) -> Tensor:
        """The same rule with sigma and D's accuracy kept on the logits' device (no host read).

        The accuracy is pooled over all DDP ranks (correct and count all-reduced, so uneven batches
        weigh right); with no real sample on any rank sigma stays.
        """
        logits = real_logits.detach().flatten().float()  # (B,)
        stats = torch.stack([says_real(logits).sum().float(), logits.new_tensor(float(logits.numel()))])  # (2,)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        correct, count = stats.unbind()
        acc = correct / count.clamp_min(1.0)
        moved = (sigma + torch.where(acc > self.target_acc, self.adjust, -self.adjust)).clamp(0.0, self.max_std)
        return torch.where(count > 0, moved, sigma)


def make_schedule(name: str, std: float, final_std: float, anneal_steps: int, target_acc: float) -> Schedule:
    """Build a schedule from flat config values; each schedule takes only the values it uses
    (``constant``: std; ``adaptive``: std, target_acc; the others: std, final_std, anneal_steps).

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or bad values.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    if cls is Constant:
        return Constant(std)
    if cls is Adaptive:
        return Adaptive(std, target_acc=target_acc)
    return cls(std, final_std=final_std, anneal_steps=anneal_steps)


class InstanceNoise(nn.Module):
    """Add N(0, sigma^2) noise to every D input (Arjovsky & Bottou 2017, sec. 3; Sonderby et al. 2016).

    Used as ``GAN.d_input``, so real and generated samples get the same noise distribution, and the
    gradient flows through g(z) + eps (Cor. 3.2). It applies in train and eval mode alike: the noise
    is part of the distribution D is trained on. With sigma == 0 ``forward`` returns its input
    object itself and draws nothing.

    The owner calls ``update(g_steps, real_logits)`` after each generator step on every rank, with
    real_logits on all ranks or none (``Adaptive`` all-reduces D's accuracy). ``step`` and ``sigma``
    are saved in ``state_dict`` (extra state), so they survive checkpoint and resume.

    Args:
        schedule: how sigma changes with generator steps; None turns the noise off (sigma 0 forever).

    Example:
        >>> noise = InstanceNoise(Linear(0.2, 0.0, anneal_steps=100))
        >>> noise.update(50)
        0.1
    """

    def __init__(self, schedule: Schedule | None = None) -> None:
        super().__init__()
        self.schedule = schedule
        self.step: int = 0
        # A float, or for a schedule that reads D's accuracy a 0-dim tensor on D's device (see advance).
        self._sigma: float | Tensor = float(schedule.std) if schedule is not None else 0.0

    @property
    def sigma(self) -> float:
        """The current std (reading it from the device when an accuracy-driven schedule keeps it there)."""
        return float(self._sigma)

    @sigma.setter
    def sigma(self, value: float) -> None:
        self._sigma = float(value)

    @classmethod
    def off(cls) -> "InstanceNoise":
        """A no-op: sigma stays 0 and ``forward`` returns its input."""
        return cls(None)

    @property
    def enabled(self) -> bool:
        """False for the no-op built by ``off()``."""
        return self.schedule is not None

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self._sigma, Tensor):  # accuracy-driven: no host read, noise even at sigma 0
            return x + self._sigma.to(x.dtype) * torch.randn_like(x)
        if self._sigma == 0:
            return x
        return x + self._sigma * torch.randn_like(x)  # same shape as x, e.g. (B, C, H, W)

    def update(self, step: int, real_logits: Tensor | None = None) -> float:
        """Move to generator step ``step`` and return the new sigma.

        Args:
            step: generator updates done so far.
            real_logits: (B,) detached logits of real samples from the last D step (logit > 0 means
                "classified real"); read only by schedules with ``needs_acc``.

        Returns:
            The new sigma.
        """
        return float(self.advance(step, real_logits))

    def advance(self, step: int, real_logits: Tensor | None = None) -> float | Tensor:
        """:meth:`update` without a host read: the new sigma, a 0-dim tensor on the logits' device for
        a schedule that reads D's accuracy (``Adaptive``), else a float. What the training step calls."""
        self.step = int(step)
        if self.schedule is None:
            return self._sigma
        if self.schedule.needs_acc:
            if real_logits is not None:
                sigma = self._sigma if isinstance(self._sigma, Tensor) else \
                    torch.tensor(self._sigma, device=real_logits.device)
                self._sigma = self.schedule.on_device(sigma, real_logits)
            return self._sigma
        self._sigma = float(self.schedule(self.step, self._sigma, None))
        return self._sigma

    def get_extra_state(self) -> dict:
        return {"step": self.step, "sigma": self.sigma}  # plain python: loads with weights_only=True

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.sigma = float(state["sigma"])

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, step={self.step}, schedule={self.schedule!r}"


SCHEDULES: dict[str, type] = {
    "constant": Constant,
    "linear": Linear,
    "exponential": Exponential,
    "cosine": Cosine,
    "step": Step,
    "adaptive": Adaptive,
}
