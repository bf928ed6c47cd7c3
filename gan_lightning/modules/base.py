"""What every GAN system shares: the two players and their Adam optimizers, latents, counters,
G's update (and the optional EMA of G's weights), sampling in eval mode, and the RNG state in checkpoints."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from gan_lightning.modules.ema import WeightEMA
from gan_lightning.torch_utils import eval_mode, frozen, host_value

FIXED_Z_SEED = 1234  # the latents of the sample grids: drawn from their own RNG, the global stream is untouched


class GeneratorSystem:
    """Mixed into a LightningModule that has ``generator``, ``discriminator``, ``z_dim``,
    a ``fixed_z`` buffer (num_fixed, z_dim), ``lr_g``, ``lr_d``, ``betas``, ``adam_eps``, ``g_objective`` and
    ``config`` (the run's resolved config, stored in checkpoints with the RNG state).

    Shadow gradient norms: when a callback sets ``shadow_due = True`` before a batch, G's update
    of that batch (:meth:`g_backward`) also measures G's gradient norm under both costs of
    Arjovsky & Bottou 2017 on its own forward pass and leaves them in ``shadow_norms``
    (name -> 0-dim tensor); the callback reads them after the batch and resets both.

    EMA of G (``g_ema``, a :class:`~gan_lightning.modules.ema.WeightEMA` or None): updated after each
    G step, not moved by a skipped one; :meth:`generate` samples from it by default, and
    :attr:`sampling_generator` is the one place that chooses between it and the live G.
    """

    # -- set-up -----------------------------------------------------------------------------
    def _init_players(self, generator: nn.Module, discriminator: nn.Module, *, lr_g: float, lr_d: float,
                      beta1: float, beta2: float, adam_eps: float) -> None:
        """Keep the two networks and their Adam settings; training uses manual optimization.

        Raises:
            ValueError: a learning rate <= 0.
        """
        if lr_g <= 0 or lr_d <= 0:
            raise ValueError(f"learning rates must be > 0, got lr_g={lr_g}, lr_d={lr_d}")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.lr_g, self.lr_d, self.betas, self.adam_eps = lr_g, lr_d, (beta1, beta2), adam_eps
        self.g_ema: WeightEMA | None = None  # see _init_g_ema (not a class attribute: it would hide the submodule)

    def _init_g_ema(self, decay: float) -> None:
        """``g_ema``: an EMA of G's weights with this decay (Karras et al. 2018), or None for 0 (off).

        Raises:
            ValueError: a decay outside [0, 1).
        """
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"g_ema must be in [0, 1) (0: off), got {decay}")
        self.g_ema = WeightEMA(self.generator, decay) if decay > 0 else None

    def _init_buffers(self, num_fixed: int, counters: Sequence[str]) -> None:
        """``fixed_z`` (num_fixed, z_dim) for sample grids and the step counters (0-dim long buffers,
        saved in checkpoints); ``z_dim`` is read from the generator."""
        self.z_dim = int(self.generator.z_dim)
        fixed = torch.randn(num_fixed, self.z_dim, generator=torch.Generator().manual_seed(FIXED_Z_SEED))
        self.register_buffer("fixed_z", fixed)  # (num_fixed, z_dim)
        for name in counters:
            self.register_buffer(name, torch.zeros((), dtype=torch.long))
        self._g_count = (0, self.g_steps._version)  # (G steps, the version of g_steps it matches): see g_step_count

    @property
    def g_step_count(self) -> int:
        """G steps taken so far, as a Python int: what schedules and stopping read, with no device read.

        It counts G updates tried (``g_steps``, the buffer saved in checkpoints, counts those applied;
        they differ only after a skipped non-finite update). When ``g_steps`` was changed from outside
        (weights loaded, a move to another device, a test), which its tensor version counter shows
        without a device read, it is read once from ``g_steps``.
        """
        self._g_count = host_value(self.g_steps, self._g_count)
        return self._g_count[0]

    shadow_due: bool = False
    shadow_norms: dict[str, Tensor] | None = None
    _restored_rng: dict[str, Any] | None = None  # from a checkpoint, applied at on_train_start
    _restored_rng_per_rank: list[dict[str, Any]] | None = None  # the same for each rank of a DDP run

    # -- checkpoints: version, config and RNG, so a resumed run continues exactly ----------------
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from gan_lightning.torch_utils import rng_state
        from gan_lightning.version import __version__

        rng = rng_state()
        stored = {"version": __version__, "config": self.config, "rng": rng}
        if self._trainer is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # Each rank draws its own latents; all of them write the checkpoint together, rank 0 the file.
            per_rank: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(per_rank, rng)
            stored["rng_per_rank"] = per_rank
        checkpoint["gan_lightning"] = stored

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("gan_lightning", {})
        self._restored_rng, self._restored_rng_per_rank = stored.get("rng"), stored.get("rng_per_rank")

    @override
    def on_train_start(self) -> None:
        # The RNG as it was when the checkpoint was written (after a batch, or at an epoch end);
        # what Lightning draws after this (a new DataLoader iterator) it drew after that point too.
        from gan_lightning.torch_utils import set_rng_state

        world = self.trainer.world_size
        restored, per_rank = self._restored_rng, self._restored_rng_per_rank
        self._restored_rng = self._restored_rng_per_rank = None
        if per_rank is not None and len(per_rank) == world:
            set_rng_state(per_rank[self.global_rank])
            return
        if restored is not None:
            set_rng_state(restored)
            saved_by = len(per_rank) if per_rank is not None else 1
            if saved_by != world:
                rank_zero_warn(
                    f"the checkpoint was written by {saved_by} process(es) and training resumes on {world}: "
                    "batches and latents are split differently, so the run goes on but does not equal one "
                    "that never stopped"
                )
        if world > 1:
            # Ranks were seeded alike (same initial weights); their latents must differ.
            torch.manual_seed(int(torch.randint(2**62, ())) + self.global_rank)

    # -- G's update, shared by both training loops --------------------------------------------
    def _g_step(self, g_opt: Any, real: Tensor, fake: Tensor) -> Tensor:
        """One update of G on ``fake`` = G(z) (with its graph); D is frozen meanwhile. Returns the detached loss."""
        with frozen(self.discriminator):
            fake_logits, fake_features = self.discriminate(fake)
            loss = self.g_objective(self, real, fake_logits, fake_features)
            penalties = getattr(self, "g_penalties", None)  # GAN: historical averaging on G
            if penalties:
                loss = loss + sum(p(self, real, fake) for p in penalties)
            bad = self._guard(loss, "G")
            g_opt.zero_grad(set_to_none=True)
            self.g_backward(loss, fake_logits)
        self._step(g_opt, bad)
        if self.g_ema is not None:
            self.g_ema.update(self.generator, skip=bad)  # a skipped step leaves the average, on the device
        count = self.g_step_count + 1
        self.g_steps += 1 if bad is None else (bad == 0).long()
        self._g_count = (count, self.g_steps._version)
        return loss.detach()

    def _guard(self, loss: Tensor, network: str) -> Tensor | None:
        """The device flag (1.0: skip) of the update with ``loss``; None: always applied (no guard)."""
        return None

    @staticmethod
    def _step(opt: Any, bad: Tensor | None) -> None:
        """``opt.step()``, skipped on the device where ``bad`` is 1: fused Adam reads ``found_inf`` and then
        leaves the weights, its moments and its step count as they were, with no read of the flag.

        Under 16-mixed precision the GradScaler sets (and removes) ``found_inf`` itself from the
        gradients, which a non-finite loss makes non-finite too.
        """
        inner = getattr(opt, "optimizer", opt)  # the torch optimizer inside Lightning's wrapper
        if bad is not None:
            inner.found_inf = bad
        try:
            opt.step()
        finally:
            if bad is not None and hasattr(inner, "found_inf"):
                del inner.found_inf

    def _count_images(self, real: Tensor) -> None:
        """Add a batch of real images, over all processes, to ``images_seen``."""
        world = self.trainer.world_size if self._trainer is not None else 1
        self.images_seen += len(real) * world

    def g_backward(self, loss: Tensor, fake_logits: Tensor) -> None:
        """``manual_backward(loss)`` of G's update, measuring the shadow norms first when they are due.

        Args:
            loss: G's scalar loss.
            fake_logits: (B,) the real/fake logits of G's samples that ``loss`` was computed from.
        """
        if not self.shadow_due:
            self.manual_backward(loss)
            return
        from gan_lightning.diagnostics.gradients import shadow_norms_on_graph

        params = [p for p in self.generator.parameters() if p.requires_grad]
        self.shadow_norms = shadow_norms_on_graph(
            fake_logits, params, lambda: self.manual_backward(loss), trained=self._trained_paper_cost()
        )
        self.shadow_due = False

    def _trained_paper_cost(self) -> str | None:
        """The paper cost G's loss equals (its gradient is reused), or None (feature matching,
        penalties, or gradients scaled by fp16 AMP)."""
        from gan_lightning.diagnostics.gradients import PAPER_G_COSTS
        from gan_lightning.core.objectives import AdversarialObjective

        if getattr(self, "g_penalties", None) or not isinstance(self.g_objective, AdversarialObjective):
            return None
        if self._trainer is not None and str(self.trainer.precision).startswith("16"):
            return None
        return next((name for name, cost in PAPER_G_COSTS.items() if self.g_objective.g_loss is cost), None)

    def sample_z(self, n: int) -> Tensor:
        """Draw n latent vectors z ~ N(0, I), shape (n, z_dim), on the module's device."""
        return torch.randn(n, self.z_dim, device=self.fixed_z.device)

    def sampling_generator(self, ema: bool | None = None) -> nn.Module:
        """The generator samples and metrics come from: G's EMA copy when there is one, else the live G.

        Args:
            ema: None: the EMA when there is one; True: the EMA; False: the live G.

        Raises:
            ValueError: ``ema=True`` without an EMA of G.
        """
        if ema and self.g_ema is None:
            raise ValueError("this module keeps no EMA of G (trained without --g_ema); sample the live G")
        return self.g_ema.net if self.g_ema is not None and ema is not False else self.generator

    @torch.no_grad()
    def generate(self, z: Tensor | None = None, n: int | None = None, *, ema: bool | None = None) -> Tensor:
        """Samples from G in eval mode (the mode G was in is restored).

        Args:
            z: (B, z_dim) latents; default the fixed latents, or ``n`` fresh ones.
            n: number of fresh samples when z is None.
            ema: which G (:meth:`sampling_generator`): None, the EMA when there is one; False, the live G.
        """
        if z is None:
            z = self.fixed_z if n is None else self.sample_z(n)
        generator = self.sampling_generator(ema)
        with eval_mode(generator):
            return generator(z.to(self.fixed_z))  # the module's device and dtype (64-true, bf16-true)

    @override
    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[d_opt, g_opt]: Adam for each player, in that order."""
        # fused: one kernel per step, and a step skipped on the device (found_inf, see _step)
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d, betas=self.betas, eps=self.adam_eps,
                                 fused=True)
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=self.betas, eps=self.adam_eps,
                                 fused=True)
        return [d_opt, g_opt]
