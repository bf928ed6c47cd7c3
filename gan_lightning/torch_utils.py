"""Small context managers shared by the module, callbacks and scripts."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def eval_mode(module: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode (train mode with ``training=True``) and restore the mode it was
    found in (per submodule)."""
    modes = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield module
    finally:
        for m, training_before in modes:
            m.training = training_before


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Turn off ``requires_grad`` on the parameters of ``module`` for the block, then restore it.

    Used for G's update: gradients flow through D to G's output but D's parameters get none.
    """
    params = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in params:
            p.requires_grad_(flag)


@contextmanager
def rng_kept(device: torch.device) -> Iterator[None]:
    """Restore the CPU RNG and the RNG of ``device`` (when it is not the CPU) after the block."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
    else:
        index = device.index if device.index is not None else 0
        with torch.random.fork_rng(devices=[index], device_type=device.type):
            yield
