"""An exponential moving average of a network's weights, shared by both training loops: D's average
in the semi-supervised one (``ssl/test_error``), G's with ``--g_ema`` (what sampling and metrics use)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from gan_lightning.torch_utils import host_value


class WeightEMA(nn.Module):
    """An exponential moving average of a network's weights, kept in a frozen copy of it.

    After each update ``ema = d * ema + (1 - d) * live`` for every parameter, with
    ``d = min(decay, (1 + n) / (10 + n))`` at update n (the warm-up of TensorFlow's
    ExponentialMovingAverage), so a short run is not dominated by the initial weights; buffers
    (BatchNorm statistics) are copied. The copy is a submodule with ``requires_grad`` off: its
    weights and the update count are in ``state_dict`` and move with the device, and no optimizer
    sees them. Salimans et al.'s reference code evaluates its classifier with such an average;
    Karras et al. 2018 (Progressive GANs) and StyleGAN sample from such an average of G.

    The count is kept as a Python int too (mirrored in the ``updates`` buffer, see
    :func:`~gan_lightning.torch_utils.host_value`), so an update reads nothing from the device.

    Args:
        net: the network to follow; copied now.
        decay: in (0, 1); the average spans about 1 / (1 - decay) updates.

    Raises:
        ValueError: a decay outside (0, 1).
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # ``updates`` as a Python int and the tensor version it was read at: read again (once) only
        # when the buffer was changed from outside (a load, a move, a test), so updates need no device read.
        self._count = (0, self.updates._version)

    def _updates(self) -> int:
        self._count = host_value(self.updates, self._count)
        return self._count[0]

    def current_decay(self) -> float:
        n = self._updates() + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, net: nn.Module, skip: Tensor | None = None) -> None:
        """Move the average toward ``net``'s current weights (same architecture as the copy).

        Args:
            net: the live network.
            skip: a 0-dim float device flag, 1.0 where the live update was skipped (a non-finite
                loss under ``--on_nonfinite skip``): the weights then stay as they are, with no read of
                the flag (the lerp weight is ``(1 - d) * (1 - skip)``). The update still counts for the
                warm-up, so the Python count never needs the flag either. None: always applied.

        Raises:
            ValueError: ``net`` has a different number of parameters than the copy.
        """
        d = self.current_decay()
        ema_params, live_params = list(self.net.parameters()), [p.detach() for p in net.parameters()]
        if len(ema_params) != len(live_params):
            raise ValueError("WeightEMA.update got a network with different parameters than the one copied")
        if skip is None:
            torch._foreach_lerp_(ema_params, live_params, 1.0 - d)
        else:
            # ema += w (live - ema) with w on the device: _foreach_lerp_ with a 0-dim tensor weight reads it
            # on the CPU (torch 2.x), _foreach_mul_ does not.
            weight = (1.0 - d) * (1.0 - skip.to(ema_params[0].dtype))
            step = torch._foreach_sub(live_params, ema_params)
            torch._foreach_mul_(step, weight)
            torch._foreach_add_(ema_params, step)
        for ema_b, b in zip(self.net.buffers(), net.buffers()):
            ema_b.copy_(b)
        count = self._updates() + 1
        self.updates += 1
        self._count = (count, self.updates._version)

    def extra_repr(self) -> str:
        return f"decay={self.decay}"
