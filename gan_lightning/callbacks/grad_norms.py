"""Gradient norms of both players as they train, and "shadow" generator norms under both costs."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from typing_extensions import override

from gan_lightning.diagnostics.gradients import PAPER_G_COSTS, generator_grad_norms
from gan_lightning.errors import is_count
from gan_lightning.lightning_state import batch_number, log_step
from gan_lightning.torch_utils import rng_kept

# What the shadow measurement reads from the module (the GAN module has all of them).
SHADOW_ATTRIBUTES = ("generator", "discriminator", "discriminate", "sample_z")



class GradientNorms(L.Callback):
    """Log the L2 norm of each player's gradient, and G's gradient norm under both paper costs.

    **Training gradients.** In ``on_before_optimizer_step`` (after backward, gradients unscaled
    under AMP, before the step) the global L2 norm of the gradients of the optimizer's
    parameters is logged as ``grad_norm/d`` (the optimizer owning the discriminator's
    parameters, ``d_opt``) or ``grad_norm/g`` (the generator's, ``g_opt``); any other optimizer
    is ``grad_norm/opt<i>``, i its index in ``trainer.optimizers``. It is one fused norm and no
    host sync. With ``n_critic > 1`` the value of the last D step of the batch is logged. Under
    DDP the gradients were averaged over the ranks in backward, so every rank has the same norm
    and it is logged with ``sync_dist=False`` at no cost (sharded strategies such as FSDP would
    give the norm of this rank's shard and are not supported). ``per_layer=True`` also logs
    ``grad_norm/d/<name>`` for every parameter, ``<name>`` relative to the network
    (``grad_norm/d/head.weight``).

    **Shadow generator norms.** Every ``shadow_every_n_steps`` batches, G's gradient norm is
    measured under both costs of Arjovsky & Bottou 2017, whatever cost is trained:
    ``grad_norm/g_minimax`` for E[log(1 - D(G(z)))], which vanishes as D nears optimal (Thm
    2.4), and ``grad_norm/g_nonsaturating`` for -E[log D(G(z))], whose gradient grows and gets
    noisy (Thms 2.5-2.6). With the project's modules (:class:`~gan_lightning.modules.base.GeneratorSystem`)
    it is measured inside G's update of that batch, on its own samples and forward pass (D after
    its update, input noise as in training): ``on_train_batch_start`` sets the module's
    ``shadow_due``, the module adds one ``torch.autograd.grad`` per cost it does not train (the
    trained cost's norm is that of the update's own gradients), and ``on_train_batch_end`` logs
    the module's ``shadow_norms``. A module without ``g_backward`` is measured after the batch on
    a fresh batch of ``shadow_batch_size`` latents with G and D run again
    (:func:`gan_lightning.diagnostics.gradients.generator_grad_norms`). Either way the run is unchanged: no
    ``.grad`` is touched, BatchNorm buffers and the RNG streams are not used up. Under DDP the
    logged value is the mean over ranks (``sync_dist=True``; two scalar all-reduces).

    The module must have ``generator``, ``discriminator``, ``discriminate(x) -> (logits,
    features)`` and ``sample_z(n)``, and optionally ``d_input`` (its buffers are restored too).

    Lightning writes logged values to the logger only every ``Trainer(log_every_n_steps)``
    batches and repeats the last value at writes in between; make both intervals multiples
    of ``log_every_n_steps``.

    Args:
        every_n_steps: batches (G steps with the GAN module) between logs of ``grad_norm/d``
            and ``grad_norm/g``.
        per_layer: also log one norm per parameter tensor.
        shadow_every_n_steps: batches between shadow measurements; 0 turns them off.
        shadow_batch_size: latents per shadow measurement of a module without ``g_backward``.

    Raises:
        ValueError: if ``every_n_steps`` or ``shadow_batch_size`` is not an int >= 1, or
            ``shadow_every_n_steps`` not an int >= 0.
        AttributeError: at fit start, if shadow norms are on and the module lacks one of
            ``generator``, ``discriminator``, ``discriminate``, ``sample_z``.

    Example:
        >>> trainer = L.Trainer(
        ...     callbacks=[GradientNorms(shadow_every_n_steps=50)], log_every_n_steps=10
        ... )  # doctest: +SKIP
        >>> trainer.fit(gan, datamodule=dm)  # doctest: +SKIP
        >>> trainer.callback_metrics["grad_norm/g_minimax"]  # doctest: +SKIP
        tensor(0.0031)
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        per_layer: bool = False,
        shadow_every_n_steps: int = 50,
        shadow_batch_size: int = 64,
    ) -> None:
        if not is_count(every_n_steps, 1):
            raise ValueError(f"every_n_steps must be an int >= 1, got {every_n_steps!r}")
        if not is_count(shadow_every_n_steps, 0):
            raise ValueError(f"shadow_every_n_steps must be an int >= 0 (0: off), got {shadow_every_n_steps!r}")
        if not is_count(shadow_batch_size, 1):
            raise ValueError(f"shadow_batch_size must be an int >= 1, got {shadow_batch_size!r}")
        self.every_n_steps = every_n_steps
        self.per_layer = bool(per_layer)
        self.shadow_every_n_steps = shadow_every_n_steps
        self.shadow_batch_size = shadow_batch_size
        self.last_shadow: dict[str, float] = {}  # the latest shadow norms, averaged over ranks
        self._param_names: dict[int, tuple[str, str]] = {}  # id(param) -> (player, name)

    # -- set-up ------------------------------------------------------------------------------
    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.shadow_every_n_steps:
            missing = [a for a in SHADOW_ATTRIBUTES if not hasattr(pl_module, a)]
            if missing:
                raise AttributeError(
                    f"GradientNorms shadow norms need the module to have {', '.join(SHADOW_ATTRIBUTES)}; "
                    f"{type(pl_module).__name__} lacks {', '.join(missing)} (or pass shadow_every_n_steps=0)"
                )
        self._param_names = {}
        for player in ("d", "g"):
            net = getattr(pl_module, {"d": "discriminator", "g": "generator"}[player], None)
            if isinstance(net, nn.Module):
                self._param_names.update({id(p): (player, n) for n, p in net.named_parameters()})

    @staticmethod
    def _due(trainer: L.Trainer, every: int) -> bool:
        return batch_number(trainer) % every == 0  # counted over epochs, as Trainer(log_every_n_steps)

    # -- gradients of the training steps ------------------------------------------------------
    @override
    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._due(trainer, self.every_n_steps):
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        player = self._player(trainer, optimizer)
        grads = [p.grad for p in params]
        total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)  # fused; stays on the device
        pl_module.log(f"grad_norm/{player}", total, on_step=True, on_epoch=False, sync_dist=False)
        if self.per_layer:
            for i, (p, g) in enumerate(zip(params, grads)):
                name = self._param_names.get(id(p), (player, f"param{i}"))[1]
                norm = torch.linalg.vector_norm(g.detach().float())
                pl_module.log(f"grad_norm/{player}/{name}", norm, on_step=True, on_epoch=False, sync_dist=False)

    def _player(self, trainer: L.Trainer, optimizer: torch.optim.Optimizer) -> str:
        """"d" or "g" by who owns the optimizer's first parameter, else "opt<index>"."""
        first = optimizer.param_groups[0]["params"][0]
        if id(first) in self._param_names:
            return self._param_names[id(first)][0]
        index = next((i for i, opt in enumerate(trainer.optimizers) if opt is optimizer), 0)
        return f"opt{index}"

    # -- shadow generator norms ---------------------------------------------------------------
    @override
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.shadow_every_n_steps and hasattr(pl_module, "g_backward"):
            pl_module.shadow_due = self._due(trainer, self.shadow_every_n_steps)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.shadow_every_n_steps or not self._due(trainer, self.shadow_every_n_steps):
            return
        if hasattr(pl_module, "g_backward"):
            norms, pl_module.shadow_norms, pl_module.shadow_due = pl_module.shadow_norms, None, False
            norms = norms or {}  # none when G's update was skipped (non-finite loss)
        else:
            norms = self.shadow_norms(pl_module)
        # Straight to the loggers, at the step Lightning gives this batch: a value put through
        # pl_module.log would be written again at every later logging step of the epoch, so
        # one measurement would look like many (and a resumed run's rows would differ).
        values = {f"grad_norm/g_{name}": float(trainer.strategy.reduce(torch.as_tensor(norm, device=pl_module.device),
                                                                        reduce_op="mean"))
                  for name, norm in norms.items()}
        self.last_shadow = values  # the same on every rank (reduced): for callers and tests
        if values:
            step = log_step(trainer)  # the step of this batch's other rows
            for logger in trainer.loggers:
                logger.log_metrics(values, step=step)

    def shadow_norms(self, pl_module: L.LightningModule) -> dict[str, float]:
        """G's gradient norm under each cost of ``PAPER_G_COSTS`` on fresh latents, run unchanged
        (the path for modules without ``g_backward``, and a check of the in-step path).

        Args:
            pl_module: the GAN module (see the class docstring for what it must have).

        Returns:
            ``{"minimax": ..., "nonsaturating": ...}``, L2 norms over all of G's parameters.
        """
        d_input = getattr(pl_module, "d_input", None)
        state_of = tuple(m for m in (pl_module.discriminator, d_input) if isinstance(m, nn.Module))

        def logits_of(x: Tensor) -> Tensor:
            return pl_module.discriminate(x)[0]  # (B,)

        with rng_kept(pl_module.device):  # z must not use up the training run's random numbers
            z = pl_module.sample_z(self.shadow_batch_size)  # (B, z_dim)
            return generator_grad_norms(pl_module.generator, logits_of, z, PAPER_G_COSTS, state_of=state_of)
