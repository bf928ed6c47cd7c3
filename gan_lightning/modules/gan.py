"""The GAN training system: manual optimization, n_critic D updates then one G update per batch."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from typing_extensions import override

from gan_lightning.core.losses import DLoss, GLoss
from gan_lightning.modules.base import GeneratorSystem
from gan_lightning.core.noise import InstanceNoise
from gan_lightning.core.objectives import AdversarialObjective

Penalty = Callable[..., Tensor]      # penalty(module, real, fake) -> scalar
Constraint = Callable[[nn.Module], None]


class GAN(GeneratorSystem):
    """A GAN as a Lightning system: networks, losses and techniques are passed in, not named.

    Per training batch: ``n_critic`` discriminator updates (a fresh G(z) each, the same real
    batch), then one generator update that reuses the last G(z), so G runs once per update.
    D is only ever called through :meth:`discriminate`, the one place where input transforms
    (instance noise) act. D's loss is ``d_loss(real_logits, fake_logits) + sum(penalties)``;
    constraints (weight clipping) run after each D step. G's loss is
    ``g_objective(self, real, fake_logits, fake_features) + sum(g_penalties)``, where the
    objective is ``g_loss(fake_logits)`` unless another one (feature matching) is given.

    Progress is counted by the module itself, in buffers saved in checkpoints:
    ``images_seen`` (real images over all ranks), ``d_steps`` and ``g_steps``. With manual
    optimization ``trainer.global_step`` counts every optimizer step, i.e. d_steps + g_steps.

    ``training_step`` returns detached ``real_logits`` and ``fake_logits`` (B,) of the last D
    update and the two losses, for callbacks to read in ``on_train_batch_end``.

    Args:
        generator: maps z (B, z_dim) to samples; must have a ``z_dim`` attribute.
        discriminator: maps samples to logits (B,) and has ``features(x) -> (B, F)`` and ``head``.
        d_loss: ``d_loss(real_logits, fake_logits)``, see gan_lightning.core.losses.
        g_loss: ``g_loss(fake_logits)``, G's adversarial loss.
        lr_g: Adam learning rate of G.
        lr_d: Adam learning rate of D.
        beta1: Adam beta1 (both players).
        beta2: Adam beta2 (both players).
        adam_eps: Adam epsilon (both players).
        n_critic: D updates per G update.
        d_penalties: modules called as ``p(self, real, fake)`` and added to D's loss.
        d_constraints: callables applied to D after each of its steps.
        g_objective: replaces the adversarial G loss; called as
            ``g_objective(self, real, fake_logits, fake_features)`` (e.g. feature matching).
        g_penalties: modules called as ``p(self, real, fake)`` and added to G's loss.
        d_input: transform applied to every D input, real and fake alike: an InstanceNoise
            (Arjovsky & Bottou 2017, sec. 3); off (sigma 0) by default. After each G update it
            is told the G step count and D's real logits, so its schedule can anneal or adapt.
        num_fixed: number of fixed latent vectors kept for sample grids.
        on_nonfinite: what a non-finite loss does: "stop" raises DivergenceError (the last good
            checkpoint stays on disk), "skip" skips that update and counts it in ``skipped_steps``.
            All ranks agree before skipping. Weights are checked every ``weight_check_every``
            batches; non-finite weights always stop.
        g_ema: decay of an EMA of G's weights updated after each G step (0: off; 0.999 is usual);
            samples and metrics then come from it (see ``GeneratorSystem.generate``).
        config: the run's resolved config, stored in checkpoints so scripts can rebuild the run.

    Raises:
        ValueError: on a non-positive learning rate or n_critic.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        d_loss: DLoss,
        g_loss: GLoss,
        *,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        adam_eps: float = 1e-8,
        n_critic: int = 1,
        d_penalties: Sequence[nn.Module] = (),
        d_constraints: Sequence[Constraint] = (),
        g_objective: nn.Module | None = None,
        g_penalties: Sequence[nn.Module] = (),
        d_input: InstanceNoise | None = None,
        num_fixed: int = 64,
        on_nonfinite: str = "stop",
        weight_check_every: int = 10,
        g_ema: float = 0.0,
        config: dict[str, Any] | None = None,
    ) -> None:
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        super().__init__(
            generator, discriminator, g_objective if g_objective is not None else AdversarialObjective(g_loss),
            lr_g=lr_g, lr_d=lr_d, beta1=beta1, beta2=beta2, adam_eps=adam_eps, g_penalties=g_penalties, g_ema=g_ema,
            num_fixed=num_fixed, on_nonfinite=on_nonfinite, weight_check_every=weight_check_every, config=config,
        )
        self.d_loss = d_loss
        self.n_critic = n_critic
        self.d_penalties = nn.ModuleList(d_penalties)
        self.d_constraints = list(d_constraints)
        self.d_input = d_input if d_input is not None else InstanceNoise.off()

    # -- the one call site of D -------------------------------------------------------------
    def discriminate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Call D on ``x`` after the input transform.

        Args:
            x: (B, *data_shape) real or generated samples.

        Returns:
            logits (B,) and penultimate features (B, F).
        """
        features = self.discriminator.features(self.d_input(x))  # (B, F)
        return self.discriminator.head(features).squeeze(1), features

    # -- training ---------------------------------------------------------------------------
    @override
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        real = batch[0] if isinstance(batch, (list, tuple)) else batch  # (B, *data_shape)
        d_opt, g_opt = self.optimizers()
        for i in range(self.n_critic):
            # Only the last fake keeps G's graph: the G update reuses it.
            with torch.set_grad_enabled(i == self.n_critic - 1):
                fake = self.generator(self.sample_z(len(real)))
            d_loss, real_logits, fake_logits = self._d_step(d_opt, real, fake)
        g_loss = self._g_step(g_opt, real, fake)
        self._count_images(real)
        sigma = self.d_input.advance(self.g_step_count, real_logits)
        self.log_dict({"loss/d": d_loss, "loss/g": g_loss}, prog_bar=True)
        self.log("noise/sigma", sigma, prog_bar=self.d_input.enabled)
        return {"real_logits": real_logits, "fake_logits": fake_logits, "d_loss": d_loss, "g_loss": g_loss}

    def _d_step(self, d_opt: Any, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fake = fake.detach()
        real_logits, _ = self.discriminate(real)
        fake_logits, _ = self.discriminate(fake)
        loss = self.d_loss(real_logits, fake_logits)
        loss = loss + sum(p(self, real, fake) for p in self.d_penalties)
        bad = self._guard(loss, "D")
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._step(d_opt, bad)
        for constraint in self.d_constraints:
            constraint(self.discriminator)
        self.d_steps += (bad == 0).long()
        return loss.detach(), real_logits.detach(), fake_logits.detach()
