"""Run control: ``last.ckpt`` at every epoch end, at the end and on SIGTERM; stopping after N generator steps."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L


class LastCheckpoint(L.Callback):
    """Keep ``last.ckpt`` current: every ``every_n_epochs`` epochs, at the end, and when preempted.

    SIGTERM (what SLURM sends before preemption) is recorded by Lightning's signal connector on
    every rank; Lightning raises ``SIGTERMException`` after the current batch, and this callback
    saves in ``on_exception``. Writes are atomic when the trainer uses
    ``AtomicCheckpointIO``. Put it after the other callbacks so their epoch-end work is in the file.
    (Lightning's ModelCheckpoint with ``save_top_k=0`` writes ``last.ckpt`` only when training
    ends, which loses every epoch of a run that is killed.)

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

    def _save(self, trainer: L.Trainer) -> None:
        if self._saved_at != trainer.global_step:
            trainer.save_checkpoint(str(self.path), weights_only=False)  # full state: resume needs optimizers
            self._saved_at = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        # Raised by Lightning between batches, so the state is consistent; other errors
        # (a diverged run) leave the last good checkpoint alone.
        if isinstance(exception, SIGTERMException):
            self._save(trainer)
            if trainer.is_global_zero:
                print(f"SIGTERM: saved {self.path} at G step {int(pl_module.g_steps)}; "
                      f"continue with --resume last", file=sys.stderr, flush=True)

class StopAtGSteps(L.Callback):
    """Stop training once the module has made ``max_g_steps`` generator updates.

    ``trainer.global_step`` counts every optimizer step (D and G, and not the updates skipped
    for a non-finite loss), so ``--max_steps`` is counted on the module's own ``g_steps``.

    Args:
        max_g_steps: generator updates to make.

    Raises:
        ValueError: if max_g_steps < 1.
    """

    def __init__(self, max_g_steps: int) -> None:
        if max_g_steps < 1:
            raise ValueError(f"max_g_steps must be >= 1, got {max_g_steps}")
        self.max_g_steps = max_g_steps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if int(pl_module.g_steps) >= self.max_g_steps:
            trainer.should_stop = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if int(pl_module.g_steps) >= self.max_g_steps:  # a resumed run that is already there
            trainer.should_stop = True
