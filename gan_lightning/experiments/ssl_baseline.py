"""The control of Salimans et al.'s semi-supervised result: the K+1 GAN's D trained on the labels alone.

Same network, optimizer (Adam), learning-rate schedule, weight average and number of D steps as
:class:`~gan_lightning.modules.semi_supervised.SemiSupervisedGAN`; no unlabeled data, no generator.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from gan_lightning.modules.ema import WeightEMA
from gan_lightning.modules.semi_supervised import (
    classification_errors,
    init_discriminator_from_data,
    init_examples,
    linear_lr_scale,
    ssl_supervised_loss,
)
from gan_lightning.torch_utils import eval_mode


@torch.no_grad()
def classifier_error(discriminator: nn.Module, loader: Iterable[Any]) -> float:
    """Fraction of ``(x, y)`` batches of ``loader`` that ``head(features(x))`` misclassifies (eval mode)."""
    wrong, total = 0.0, 0
    with eval_mode(discriminator):
        for x, y in loader:
            x, y = x.to(_device_of(discriminator)), y.to(_device_of(discriminator))
            wrong += float(classification_errors(discriminator.head(discriminator.features(x)), y).sum())
            total += len(y)
    return wrong / max(total, 1)


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def supervised_baseline(
    discriminator: nn.Module,
    datamodule: Any,
    steps: int,
    *,
    lr: float = 3e-3,
    beta1: float = 0.5,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
    ema_decay: float = 0.999,
    lr_decay_steps: int = 0,
    data_init: int = 500,
    on_step: Callable[[int, float], None] | None = None,
) -> float:
    """Train ``discriminator`` on the labeled examples alone and return its test error.

    The control of Salimans et al.'s semi-supervised result: the same D, optimizer (Adam),
    learning-rate schedule, EMA and number of D steps as :class:`SemiSupervisedGAN`, with
    cross-entropy on the labeled batches only (no unlabeled data, no generator). Batches come from
    ``datamodule.labeled_dataloader(steps)``, so they are exactly the labeled batches of a
    semi-supervised run of ``steps`` batches; the error is measured on ``datamodule``'s
    validation split (the held-out test split) with the EMA weights (live ones if ``ema_decay=0``).
    Runs where ``discriminator``'s parameters are; seed the global RNG first for a repeatable run.

    Args:
        discriminator: ``features(x) -> (B, F)`` and ``head`` to (B, K) class logits; trained in place.
        datamodule: a :class:`~gan_lightning.data.semi_supervised.SemiSupervisedDataModule`.
        steps: D updates (one labeled batch each).
        lr, beta1, beta2, adam_eps: Adam settings.
        ema_decay: decay of the evaluated weight average (0: evaluate the live weights).
        lr_decay_steps: linear decay of lr to 0 at this step (0: constant), as the module.
        data_init: examples for the data-dependent init of D's weight-normalized layers (0: off),
            the same examples as the module's.
        on_step: called as ``on_step(step, loss)`` after each update (progress, logging).

    Returns:
        The test error, a fraction in [0, 1].

    Raises:
        ValueError: ``steps`` < 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    datamodule.setup("fit")
    device = _device_of(discriminator)
    if data_init:
        init_discriminator_from_data(discriminator, init_examples(datamodule, data_init).to(device))
    discriminator.train()
    ema = WeightEMA(discriminator, ema_decay) if ema_decay > 0 else None
    opt = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(beta1, beta2), eps=adam_eps)
    for step, (x, y) in enumerate(datamodule.labeled_dataloader(steps)):
        scale = linear_lr_scale(step, lr_decay_steps)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        x, y = x.to(device), y.to(device)
        loss = ssl_supervised_loss(discriminator.head(discriminator.features(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(discriminator)
        if on_step is not None:
            on_step(step + 1, float(loss.detach()))
    return classifier_error(ema.net if ema is not None else discriminator, datamodule.val_dataloader())
