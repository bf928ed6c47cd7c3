"""A short frozen-generator probe (Arjovsky & Bottou 2017, Figs. 1-3) every few epochs of training."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import lightning as L
from torch import Tensor, nn
from typing_extensions import override

from gan_lightning.diagnostics.probe import ACCURACY_TARGET, MAX_REAL_EXAMPLES, probe, real_tensor, summarize
from gan_lightning.errors import is_count
from gan_lightning.diagnostics.probe_recipe import LR_SCHEDULES, PROBE_LR, PROBE_SCHEDULE

# What the callback reads from the module and the trainer (GAN and GANDataModule have them).
MODULE_ATTRIBUTES = ("generator", "discriminator")
LOGGED = ("final_d_accuracy", "grad_norm_minimax_last", "grad_norm_nonsaturating_last",
          f"iters_to_accuracy_{ACCURACY_TARGET}")


def fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every submodule that has ``reset_parameters`` re-initialized.

    The copy has the same architecture but PyTorch's default initialization (not, e.g., DCGAN's
    N(0, 0.02)), and BatchNorm running statistics start again from 0 and 1.
    """
    fresh = copy.deepcopy(module)
    for m in fresh.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return fresh


class ProbeCallback(L.Callback):
    """Every ``every_n_epochs`` epochs, train a fresh D against a frozen copy of G and log what it finds.

    At the end of every K-th training epoch: copy the generator, build a fresh discriminator
    (``make_discriminator(data_shape)``, as ``scripts/train.py`` passes it the recipe of
    ``scripts/probe_discriminator.py``, :func:`gan_lightning.diagnostics.probe.probe_discriminator`; by default a
    deep copy of the training D with its parameters re-initialized, see :func:`fresh_copy`), train it for
    ``d_iters`` iterations on real data from ``trainer.datamodule.dataset("train")`` and measure G's
    gradient norms under both paper costs (see :func:`gan_lightning.diagnostics.probe.probe`). It logs
    ``probe/final_d_accuracy`` (mean over the last 10 D iterations), ``probe/grad_norm_minimax_last``,
    ``probe/grad_norm_nonsaturating_last`` and, when D got there, ``probe/iters_to_accuracy_0.99``.
    A D that separates the two distributions within a few iterations with a vanishing minimax
    gradient is the paper's sign that the supports are (nearly) disjoint.

    The training run is not disturbed: the probe works on copies (training weights, BatchNorm
    statistics and optimizer state stay as they were) inside an RNG fork (the CPU and the module's
    device), so a run is the same with or without this callback. It runs on global rank 0 only
    and logs with ``rank_zero_only=True``; it reads the module's ``generator`` (with ``z_dim``)
    and ``discriminator`` (maps samples to logits (B,)).

    Args:
        every_n_epochs: epochs between probes.
        d_iters: D iterations per probe.
        grad_every: D iterations between gradient-norm measurements (the last is always measured).
        noise_std: std of the instance noise on D's real and generated inputs during the probe.
        batch_size: real and generated samples per D iteration.
        grad_batches: batches of z per gradient-norm measurement.
        lr: the probe D's Adam learning rate (betas 0.5, 0.999) at its first update.
        lr_schedule: "linear" (decays to 0 over ``d_iters``) or "constant".
        make_discriminator: builds a fresh D for data of the given shape (None: :func:`fresh_copy`
            of the module's D).
        max_real: real examples held in memory (a random subset of a larger data set).
        seed: seed of every probe (the same D initialization and batches at every epoch).

    Raises:
        ValueError: a count < 1, a negative noise std, a non-positive learning rate or an unknown schedule.

    Example:
        >>> trainer = L.Trainer(max_epochs=20, callbacks=[ProbeCallback(every_n_epochs=5)])
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        d_iters: int = 100,
        grad_every: int = 10,
        noise_std: float = 0.0,
        batch_size: int = 64,
        grad_batches: int = 1,
        lr: float = PROBE_LR,
        max_real: int = MAX_REAL_EXAMPLES,
        seed: int = 0,
        lr_schedule: str = PROBE_SCHEDULE,
        make_discriminator: Callable[[tuple[int, ...]], nn.Module] | None = None,
    ) -> None:
        counts = {"every_n_epochs": every_n_epochs, "d_iters": d_iters, "grad_every": grad_every,
                  "batch_size": batch_size, "grad_batches": grad_batches, "max_real": max_real}
        for name, value in counts.items():
            if not is_count(value):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}")
        self.every_n_epochs, self.d_iters, self.grad_every = every_n_epochs, d_iters, grad_every
        self.noise_std, self.batch_size, self.grad_batches = float(noise_std), batch_size, grad_batches
        self.lr, self.max_real, self.seed, self.lr_schedule = lr, max_real, seed, lr_schedule
        self.make_discriminator = make_discriminator
        self.last_summary: dict[str, Any] | None = None  # summarize() of the latest probe
        self._real: Tensor | None = None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        missing = [a for a in MODULE_ATTRIBUTES if not hasattr(pl_module, a)]
        if missing:
            raise AttributeError(f"ProbeCallback needs the module to have {', '.join(missing)}")
        if stage == "fit" and not hasattr(getattr(trainer, "datamodule", None), "dataset"):
            raise ValueError('ProbeCallback reads real data from trainer.datamodule.dataset("train"): '
                             "fit with a GANDataModule (datamodule=...)")

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        summary = self.run(trainer, pl_module)
        for key in LOGGED:
            if summary[key] is not None:
                pl_module.log(f"probe/{key}", float(summary[key]), on_step=False, on_epoch=True,
                              rank_zero_only=True)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Probe the module's current generator once and return ``summarize`` of it."""
        device = pl_module.device
        if self._real is None:
            self._real = real_tensor(trainer.datamodule.dataset("train"), self.max_real, self.seed).to(device)
        shape = tuple(self._real.shape[1:])
        make = self.make_discriminator
        rows = probe(
            pl_module.generator, self._real,
            (lambda: make(shape)) if make is not None else (lambda: fresh_copy(pl_module.discriminator)),
            d_iters=self.d_iters, noise_std=self.noise_std, batch_size=self.batch_size, lr=self.lr,
            lr_schedule=self.lr_schedule,
            grad_batches=self.grad_batches, grad_every=self.grad_every, seed=self.seed, device=device,
        )  # probe copies G, builds D inside its own RNG fork and restores the RNG
        self.last_summary = summarize(rows)
        return self.last_summary
