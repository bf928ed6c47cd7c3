"""Discriminator accuracy, mean logits and a Jensen-Shannon estimate, read from D's logits."""

from __future__ import annotations

import math
from typing import Any, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors
from typing_extensions import override

from gan_lightning.core.losses import says_fake, says_real
from gan_lightning.lightning_state import batch_number

LOG4 = math.log(4.0)

# Order of the per-example sums kept by _PooledSums; one vector so a DDP sync is one all_gather.
_SUM_NAMES = (
    "real_correct", "real_bce", "real_logit", "real_count",
    "fake_correct", "fake_bce", "fake_logit", "fake_count",
)


def _sums(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Per-example sums behind every statistic, so batches and ranks pool exactly. Returns (8,)."""
    r, f = real_logits.detach().float().flatten(), fake_logits.detach().float().flatten()
    # D(x) = sigmoid(logit): -log D(x) = softplus(-logit), -log(1 - D(x)) = softplus(logit).
    return torch.stack([
        says_real(r).float().sum(), F.softplus(-r).sum(), r.sum(), r.new_tensor(r.numel()),
        says_fake(f).float().sum(), F.softplus(f).sum(), f.sum(), f.new_tensor(f.numel()),
    ])


def _stats_from_sums(sums: Tensor) -> dict[str, Tensor]:
    """The logged statistics (0-dim tensors) from the pooled sums of :func:`_sums`."""
    rc, rb, rl, rn, fc, fb, fl, fn = sums.unbind()
    bce = rb / rn + fb / fn  # d_bce_loss pooled over the examples seen
    return {
        "d/acc_real": rc / rn,
        "d/acc_fake": fc / fn,
        "d/acc": (rc + fc) / (rn + fn),
        "d/jsd_estimate": (LOG4 - bce) / 2,
        "d/logit_real": rl / rn,
        "d/logit_fake": fl / fn,
    }


def discriminator_stats(real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    """Accuracy, mean logits and the JSD estimate of D on one batch.

    D says "real" when its logit is > 0 (D(x) = sigmoid(logit) > 1/2), so a real example is
    classified correctly when its logit is > 0 and a fake one when its logit is <= 0.

    ``d/jsd_estimate`` is ``(log 4 - L_bce) / 2`` with ``L_bce = d_bce_loss(real_logits,
    fake_logits)``. For the optimal D, ``-L_bce = 2 JSD(P_r || P_g) - 2 log 2`` (Arjovsky & Bottou
    2017, eq. (2)), so the estimate equals the JSD then and is at most log 2 ~ 0.693 (disjoint
    supports). For any other D it is only a lower bound in expectation, and it is computed from
    the logits whatever loss is trained (for a WGAN critic the "logits" are not log-odds and the
    number means little). Nothing is clamped: a bad D gives a negative estimate.

    Args:
        real_logits: (B_r,) D's logits of real samples (higher = more real).
        fake_logits: (B_f,) D's logits of generated samples.

    Returns:
        0-dim tensors keyed ``d/acc_real``, ``d/acc_fake``, ``d/acc`` (over all B_r + B_f
        examples), ``d/jsd_estimate``, ``d/logit_real``, ``d/logit_fake`` (means).

    Example:
        >>> stats = discriminator_stats(torch.tensor([3.0, -1.0]), torch.tensor([-2.0, -4.0]))
        >>> float(stats["d/acc_real"]), float(stats["d/acc_fake"]), float(stats["d/acc"])
        (0.5, 1.0, 0.75)
    """
    return _stats_from_sums(_sums(real_logits, fake_logits))


class _PooledSums(Metric):
    """Sum of :func:`_sums` vectors over batches and, at ``compute``, over DDP ranks."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sums", default=torch.zeros(len(_SUM_NAMES)), dist_reduce_fx="sum")

    def update(self, real_logits: Tensor, fake_logits: Tensor) -> None:
        self.sums += _sums(real_logits, fake_logits).to(self.sums.dtype)

    def compute(self) -> Tensor:
        return self.sums.clone()  # (8,)


class DiscriminatorAccuracy(L.Callback):
    """Log how well D separates real from fake: accuracies, mean logits and a JSD estimate.

    Reads ``outputs["real_logits"]`` and ``outputs["fake_logits"]`` (B,), the detached logits
    of the last D update that the GAN module's ``training_step`` returns. Every batch their
    per-example sums go into a torchmetrics ``Metric`` (a few tiny kernels, no host sync);
    every ``every_n_steps`` batches the sums are pooled over the ranks (one ``all_gather`` under
    DDP, nothing on one device), turned into the statistics of :func:`discriminator_stats` and
    logged with ``on_step=True``, then reset. A logged value is therefore over all examples
    of all ranks in the last ``every_n_steps`` batches, the same on every rank, so it needs no
    ``sync_dist``.

    Logged keys: ``d/acc_real``, ``d/acc_fake``, ``d/acc`` (on the progress bar),
    ``d/jsd_estimate`` = (log 4 - L_bce) / 2 (equal to JSD(P_r || P_g) only for a near-optimal
    D, Arjovsky & Bottou 2017, eq. (2); see :func:`discriminator_stats`), ``d/logit_real``,
    ``d/logit_fake``.

    Lightning writes logged values to the logger only every ``Trainer(log_every_n_steps)``
    batches, and at a write in between two logs of this callback it repeats the last value;
    make ``every_n_steps`` a multiple of ``log_every_n_steps``.

    The sums of a window that a checkpoint cuts are in the checkpoint (``state_dict``, those of
    every rank), so a resumed run logs the same statistics as one that never stopped.

    Args:
        every_n_steps: batches per logged value (the window the statistics are pooled over);
            with the GAN module a batch is one G step.
        prog_bar: show ``d/acc`` on the progress bar.

    Raises:
        ValueError: if ``every_n_steps`` is not an int >= 1.
        KeyError: during training, if ``training_step`` does not return ``real_logits`` and
            ``fake_logits``.

    Example:
        >>> from lightning.pytorch.loggers import CSVLogger
        >>> trainer = L.Trainer(callbacks=[DiscriminatorAccuracy(every_n_steps=10)],
        ...                     log_every_n_steps=10, logger=CSVLogger("runs"))  # doctest: +SKIP
        >>> trainer.fit(gan, datamodule=dm)  # doctest: +SKIP
        >>> trainer.callback_metrics["d/acc"]  # doctest: +SKIP
        tensor(0.7266)
    """

    def __init__(self, every_n_steps: int = 1, prog_bar: bool = True) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an int >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.prog_bar = bool(prog_bar)
        self._pooled = _PooledSums()
        self._restored: Tensor | None = None  # (world_size, 8) sums of the open window, from a checkpoint

    @override
    def state_dict(self) -> dict[str, Any]:
        # Called on every rank while a checkpoint is written (one all_gather under DDP).
        sums = self._pooled.sums.detach()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return {"sums_per_rank": torch.stack(gather_all_tensors(sums)).cpu()}  # (world_size, 8)
        return {"sums_per_rank": sums.cpu()[None]}  # (1, 8)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict["sums_per_rank"]

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The model is on its device by now; the metric state must live there too.
        self._pooled.to(pl_module.device)
        self._pooled.reset()
        if self._restored is not None:
            restored, self._restored = self._restored, None
            if len(restored) == trainer.world_size:  # each rank goes on with its own sums
                self._pooled.sums += restored[trainer.global_rank].to(self._pooled.sums)
            elif trainer.global_rank == 0:  # another number of ranks: the pooled sums, counted once
                self._pooled.sums += restored.sum(0).to(self._pooled.sums)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, Mapping) or "real_logits" not in outputs or "fake_logits" not in outputs:
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise KeyError(
                "DiscriminatorAccuracy needs training_step to return a dict with 'real_logits' and "
                f"'fake_logits' (B,) tensors; got {got}"
            )
        real_logits, fake_logits = outputs["real_logits"], outputs["fake_logits"]
        if self._pooled.device != real_logits.device:
            self._pooled.to(real_logits.device)
        self._pooled.update(real_logits, fake_logits)
        if batch_number(trainer) % self.every_n_steps:  # counted over epochs, as Trainer(log_every_n_steps)
            return
        stats = _stats_from_sums(self._pooled.compute())  # pooled over ranks: same on every rank
        self._pooled.reset()
        for name, value in stats.items():
            pl_module.log(
                name, value, on_step=True, on_epoch=False, sync_dist=False,
                prog_bar=self.prog_bar and name == "d/acc",
            )
