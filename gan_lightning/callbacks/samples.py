"""Sample grids (images) and scatter plots (2-D points) written during training."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from gan_lightning.images import save_image_grid, save_scatter
from gan_lightning.lightning_state import log_step


def which_generator(pl_module: L.LightningModule) -> str:
    """The G that ``generate`` samples: ``"EMA of G (decay 0.999)"`` when the module keeps one
    (``g_ema``, ``--g_ema``), else ``"live G"``."""
    ema = getattr(pl_module, "g_ema", None)
    return f"EMA of G (decay {ema.decay:g})" if ema is not None else "live G"


def sample_title(pl_module: L.LightningModule, when: str) -> str:
    """A sample grid's title: ``"epoch 3, 468 G steps, EMA of G (decay 0.999)"``."""
    return f"{when}, {int(pl_module.g_steps):,} G steps, {which_generator(pl_module)}"


class SampleGrid(L.Callback):
    """Write what G makes from its fixed latents as a PNG every ``every_n_epochs`` and at the end.

    Images become a grid (``samples/epoch_0003.png``); 2-D points a scatter plot over the real
    data. Each is titled with the epoch, the G steps and which G drew it (``epoch 3, 468 G steps,
    EMA of G (decay 0.999)``), and logged to W&B with that caption when a WandbLogger is attached.
    Reads the module's ``generate`` (eval mode, mode restored; the EMA of G when the module keeps
    one, ``g_ema``, ``--g_ema``), ``fixed_z`` buffer, ``z_dim`` and ``g_steps``.

    Args:
        out_dir: folder for the PNG files.
        every_n_epochs: epochs between samples; 0 writes only at the end of training.
        num_points: points drawn for the 2-D scatter plot.

    Raises:
        ValueError: if every_n_epochs < 0 or num_points < 1.
    """

    def __init__(self, out_dir: str | Path, every_n_epochs: int = 1, num_points: int = 1000) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0, got {every_n_epochs}")
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.out_dir = Path(out_dir)
        self.every_n_epochs = every_n_epochs
        self.num_points = num_points
        self.last_written: Path | None = None
        self._written_at: int | None = None  # G steps when the last PNG was written

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0:
            self.write(trainer, pl_module, f"epoch_{epoch:04d}", f"epoch {epoch}")

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._written_at != int(pl_module.g_steps):
            # G steps not shown yet (epochs between two of every_n_epochs, or every_n_epochs 0).
            # Lightning counts an epoch cut short by max_steps as done: current_epoch is the epochs run.
            self.write(trainer, pl_module, f"step_{int(pl_module.g_steps):07d}",
                       f"epoch {trainer.current_epoch} (end of training)")

    @rank_zero_only
    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str, when: str = "") -> Path:
        """Write ``<out_dir>/<name>.png`` titled ``"<when>, <G steps> G steps, <which G>"`` (the W&B
        caption too); return its path."""
        path = self.out_dir / f"{name}.png"
        title = sample_title(pl_module, when or name)
        if self._is_points(pl_module):
            # A fixed generator keeps the scatter comparable across epochs. Drawn in float32 and cast
            # to the module's dtype (float64, bfloat16 under --precision 64-true / bf16-true), so
            # every precision sees the same latents.
            z = torch.randn(self.num_points, pl_module.z_dim, generator=torch.Generator().manual_seed(0))
            points = pl_module.generate(z.to(pl_module.fixed_z))  # (N, 2)
            reference = self._reference(trainer)
            save_scatter(points, path, reference, title=title)
        else:
            save_image_grid(pl_module.generate(), path, title=title)  # (num_fixed, C, H, W)
        self.last_written, self._written_at = path, int(pl_module.g_steps)
        from lightning.pytorch.loggers import WandbLogger

        step = log_step(trainer)  # the step of every other row of this batch
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[str(path)], step=step, caption=[title])
        return path

    @staticmethod
    def _is_points(pl_module: L.LightningModule) -> bool:
        return len(getattr(pl_module.generator, "data_shape", ())) == 1

    def _reference(self, trainer: L.Trainer) -> torch.Tensor | None:
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "dataset"):
            return None
        data = dm.dataset("train")
        n = min(len(data), 2000)
        return torch.stack([data[i][0] for i in range(n)])
