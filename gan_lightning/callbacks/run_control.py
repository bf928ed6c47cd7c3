"""Run control: ``last.ckpt`` at epoch ends, at a stop mid-epoch, at the end and on SIGTERM; a G-step limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from gan_lightning.callbacks.messages import rank_zero_say
from gan_lightning.lightning_state import epoch_batch_number, log_step


class LastCheckpoint(L.Callback):
    """Keep ``last.ckpt`` current: every ``every_n_epochs`` epochs, at the end, and when preempted.

    SIGTERM (what SLURM sends before preemption) is recorded by Lightning's signal connector on
    every rank; Lightning raises ``SIGTERMException`` after the current batch, and this callback
    saves in ``on_exception``. Writes are atomic when the trainer uses
    ``AtomicCheckpointIO``. Put it after the other callbacks so their epoch-end work is in the file.
    (Lightning's ModelCheckpoint with ``save_top_k=0`` writes ``last.ckpt`` only when training
    ends, which loses every epoch of a run that is killed.)

    A stop asked for during a batch (``trainer.should_stop``, e.g. by :class:`StopAtGSteps`
    before this callback) ends the epoch early, and Lightning then runs the epoch-end hooks and
    counts the epoch as finished: a checkpoint written then would resume at the next epoch and
    never train the rest of this one. So the file is written at the end of that batch instead,
    mid-epoch, as after a SIGTERM: Lightning resumes it with the next batch of the same epoch
    (the data loader's position is in the file too, see :class:`~gan_lightning.data.sampling.ResumableLoader`).
    A stop that only shows after this callback's ``on_train_batch_end`` is saved at the epoch
    end with a warning that the resumed run will skip the rest of that epoch.

    On resume, a logger with ``drop_rows_from(step)`` (:class:`~gan_lightning.trainer.loggers.AppendingCSVLogger`)
    is told the step of the first batch, so rows that the earlier session logged after the
    checkpoint (after Ctrl-C, or a crash) are not kept next to the rows logged again.

    Args:
        path: the checkpoint file (the run's ``checkpoints/last.ckpt``).
        every_n_epochs: epochs between saves.

    Raises:
        ValueError: if every_n_epochs < 1.
    """

    def __init__(self, path: str | Path, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.path = Path(path)
        self.every_n_epochs = every_n_epochs
        self._saved_at: int | None = None  # trainer.global_step of the last save
        self._resumed = False  # a resumed fit whose first batch has not started yet

    def _save(self, trainer: L.Trainer) -> None:
        if self._saved_at != trainer.global_step:
            trainer.save_checkpoint(str(self.path), weights_only=False)  # full state: resume needs optimizers
            self._saved_at = trainer.global_step

    @staticmethod
    def _cut_short(trainer: L.Trainer) -> bool:
        """True when the current epoch stops before its last batch (checked at a batch end or the epoch end)."""
        batches = trainer.num_training_batches
        return batches != float("inf") and epoch_batch_number(trainer) < batches

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resumed = trainer.ckpt_path is not None

    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._resumed:  # the first batch after the checkpoint: what was logged from its step on is stale
            self._resumed = False
            step = log_step(trainer)
            for logger in trainer.loggers:
                if callable(getattr(logger, "drop_rows_from", None)):
                    logger.drop_rows_from(step)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if trainer.should_stop and self._cut_short(trainer):
            self._save(trainer)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._cut_short(trainer):
            if self._saved_at != trainer.global_step:  # a stop this callback did not see at the batch end
                progress = epoch_batch_number(trainer)
                rank_zero_warn(
                    f"training stopped after batch {progress} of {trainer.num_training_batches} of epoch "
                    f"{trainer.current_epoch} by a callback or hook that runs after LastCheckpoint; "
                    f"{self.path} counts that epoch as finished, so --resume last skips its remaining batches. "
                    "Put the callback that stops training before LastCheckpoint."
                )
                self._save(trainer)
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._save(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        # Raised by Lightning between batches, so the state is consistent; other errors
        # (a diverged run) leave the last good checkpoint alone.
        if isinstance(exception, SIGTERMException):
            self._save(trainer)
            rank_zero_say(f"SIGTERM: saved {self.path} at G step {_g_steps(pl_module)}; continue with --resume last")

class StopAtGSteps(L.Callback):
    """Stop training once the module has made ``max_g_steps`` generator updates.

    ``trainer.global_step`` counts every optimizer step (D and G, and not the updates skipped
    for a non-finite loss), so ``--max_steps`` is counted on the module's own ``g_steps``.
    It asks Lightning to stop at the end of the batch (``trainer.should_stop``); put it before
    :class:`LastCheckpoint`, which then saves there, mid-epoch, so that a run continued with a
    larger limit trains the rest of the epoch exactly as one run without the stop would.

    Args:
        max_g_steps: generator updates to make.

    Raises:
        ValueError: if max_g_steps < 1.
    """

    def __init__(self, max_g_steps: int) -> None:
        if max_g_steps < 1:
            raise ValueError(f"max_g_steps must be >= 1, got {max_g_steps}")
        self.max_g_steps = max_g_steps

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if _g_steps(pl_module) >= self.max_g_steps:
            trainer.should_stop = True

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _g_steps(pl_module) >= self.max_g_steps:  # a resumed run that is already there
            trainer.should_stop = True


def _g_steps(pl_module: L.LightningModule) -> int:
    """G steps taken, without a device read when the module keeps them as a Python int."""
    count = getattr(pl_module, "g_step_count", None)
    return int(pl_module.g_steps) if count is None else count
