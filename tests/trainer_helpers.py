"""The small CPU Trainer the tests train with (one epoch of a few batches, CSV logs, nothing else)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger


def tiny_trainer(tmp_path: Path, callbacks=(), **kwargs) -> L.Trainer:
    """A CPU Trainer logging every step to ``tmp_path/metrics.csv``; ``kwargs`` override the defaults
    (one epoch of 4 batches, no checkpoints, progress bar, model summary or sanity validation)."""
    options = dict(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=4, log_every_n_steps=1,
        logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks),
    )
    options.update(kwargs)
    return L.Trainer(**options)
