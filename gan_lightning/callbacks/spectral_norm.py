"""The largest singular value of each of D's weight layers as it trains (``sn/<layer>``)."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn
from typing_extensions import override

from gan_lightning.diagnostics.spectral import largest_singular_values
from gan_lightning.errors import is_count
from gan_lightning.lightning_state import batch_number

PREFIX = "sn/"  # sn/<name of the layer in D>, e.g. sn/body.0, sn/head


class SpectralNorms(L.Callback):
    """Log sigma_max of the weight each of D's Linear and convolution layers computes with, as
    ``sn/<layer name>`` (the name relative to D: ``sn/body.0``, ``sn/head``).

    With ``--d_spectral_norm`` (Miyato et al. 2018) the values should stay near 1: they are the exact
    largest singular value (an SVD, :func:`~gan_lightning.diagnostics.spectral.largest_singular_values`)
    of W / sigma, sigma the power method's running estimate, so a value away from 1 means that one
    power iteration per forward pass does not keep up with the weights. On a D without spectral norm it
    logs the raw weights' largest singular values.

    Measured at the end of a batch (after its D and G updates) every ``every_n_steps`` batches only:
    between them nothing is computed or read from the device. The values are tensors handed to
    ``pl_module.log`` (Lightning reads them when it writes a row). The power iteration's state is not
    touched (the weights are read with the parametrizations in eval mode). Under DDP every rank holds
    the same weights, so the values are logged without a reduction.

    The module must have a ``discriminator`` (an ``nn.Module``).

    Args:
        every_n_steps: batches between measurements; use ``Trainer(log_every_n_steps)``.

    Raises:
        ValueError: ``every_n_steps`` is not an int >= 1.
        AttributeError: at fit start, when the module has no ``discriminator`` module.

    Example:
        >>> trainer = L.Trainer(callbacks=[SpectralNorms(every_n_steps=10)], log_every_n_steps=10)  # doctest: +SKIP
        >>> trainer.fit(gan, datamodule=dm)  # doctest: +SKIP
        >>> trainer.callback_metrics["sn/head"]  # doctest: +SKIP
        tensor(1.0003)
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if not is_count(every_n_steps, 1):
            raise ValueError(f"every_n_steps must be an int >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(getattr(pl_module, "discriminator", None), nn.Module):
            raise AttributeError(f"SpectralNorms needs the module to have a `discriminator` nn.Module; "
                                 f"{type(pl_module).__name__} has none")

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_number(trainer) % self.every_n_steps:  # counted over epochs, as Trainer(log_every_n_steps)
            return
        for name, sigma in largest_singular_values(pl_module.discriminator).items():
            pl_module.log(PREFIX + name, sigma, on_step=True, on_epoch=False, sync_dist=False)
