"""Data parallelism for a GAN trained by manual optimization: each optimizer's gradients are
averaged over the processes just before its step (``--strategy ddp_gan``, the default with
several processes).

Lightning's DDP wraps the whole LightningModule in one ``DistributedDataParallel``. A GAN step
runs two backward passes that each touch one network (D's loss never reaches G's weights, G's
update leaves D frozen), so plain DDP stops with "parameters that were not used in producing the
loss", and ``ddp_find_unused_parameters_true`` searches the autograd graph after every backward
and all-reduces both networks' gradient buckets each time. Here nothing is wrapped: before
``optimizer.step()`` the gradients of that optimizer's parameters, and only those, are averaged in
one coalesced all-reduce per dtype; at the start of every training step the module's buffers
(batch-norm statistics, counters, the noise level) are broadcast from rank 0, as DDP does in its
forward. With two processes the averaged gradients equal DDP's bit for bit (both halve, then sum).

What is given up: DDP overlaps the all-reduce of early buckets with the rest of the backward pass;
this reduction starts after it. For GAN-sized networks the all-reduce is one short collective per
update (``bench/ddp.py`` measures both).
"""

from __future__ import annotations

from typing import Any, Callable

from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy
from typing_extensions import override

from gan_lightning.config.resolve import DDP_GAN
from gan_lightning.torch_utils import average_coalesced, broadcast_coalesced


class GradientAveragingDDP(DDPStrategy):
    """``DDPStrategy`` without the DDP wrapper: gradients are averaged per optimizer at its step.

    Takes the arguments of ``DDPStrategy`` (``process_group_backend``, ``start_method``, ``timeout``,
    ...); the wrapper's own arguments (``find_unused_parameters``, ``static_graph``, communication
    hooks) have nothing to act on here.
    """

    strategy_name = DDP_GAN

    @override
    def configure_ddp(self) -> None:
        # What DDP's constructor does before it wraps: every rank starts from rank 0's weights and buffers.
        _sync_module_states(self.model)

    @override
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        broadcast_coalesced(list(self.lightning_module.buffers()))  # as DDP's forward: rank 0's buffers
        return super().training_step(*args, **kwargs)

    @override
    def optimizer_step(self, optimizer: Any, closure: Callable[[], Any], model: Any = None, **kwargs: Any) -> Any:
        params = (p for group in optimizer.param_groups for p in group["params"])
        average_coalesced([p.grad for p in params if p.grad is not None], self.world_size)
        return super().optimizer_step(optimizer, closure, model, **kwargs)
