"""The LightningModule every GAN system subclasses: one constructor for the shared settings (the two
players and their Adam optimizers, G's objective and penalties, the EMA of G, the fixed latents, the
non-finite guard), G's update, the guard of every optimizer step, sampling in eval mode, and the
config and RNG state in checkpoints."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from gan_lightning.errors import DivergenceError
from gan_lightning.lightning_state import attached_trainer, batch_number
from gan_lightning.modules.ema import WeightEMA
from gan_lightning.torch_utils import eval_mode, frozen, host_value

# Counters added to the modules after checkpoints had been written (skipped_steps: the semi-supervised
# loop was guarded later): a checkpoint without one starts it at 0 (here and in trainer/checkpoints.py).
LATER_COUNTERS = ("skipped_steps",)
FIXED_Z_SEED = 1234  # the latents of the sample grids: drawn from their own RNG, the global stream is untouched


class GeneratorSystem(L.LightningModule):
    """The LightningModule both training loops subclass: the two players and their Adam optimizers
    (manual optimization), G's objective and penalties, the EMA of G, the fixed latents, the step
    counters, the non-finite guard of every optimizer step, and the run's config and RNG state in
    checkpoints. A subclass adds its D step and ``training_step``, and ``discriminate(x) -> (logits
    (B,), features (B, F))``, the one call site of D that G's update uses.

    Counters (0-dim long buffers, saved in checkpoints): ``images_seen`` (real images over all ranks,
    :meth:`_count_images`), ``d_steps`` and ``g_steps`` (updates applied), ``skipped_steps`` (updates
    skipped for a non-finite loss).

    Shadow gradient norms: when a callback sets ``shadow_due = True`` before a batch, G's update
    of that batch (:meth:`g_backward`) also measures G's gradient norm under both costs of
    Arjovsky & Bottou 2017 on its own forward pass and leaves them in ``shadow_norms``
    (name -> 0-dim tensor); the callback reads them after the batch and resets both.

    EMA of G (``g_ema``, a :class:`~gan_lightning.modules.ema.WeightEMA` or None): updated after each
    G step, not moved by a skipped one; :meth:`generate` samples from it by default, and
    :meth:`sampling_generator` is the one place that chooses between it and the live G.

    Args:
        generator: maps z (B, z_dim) to samples; must have a ``z_dim`` attribute.
        discriminator: D, called by the subclass's ``discriminate``.
        g_objective: what G minimizes, ``g_objective(self, real, fake_logits, fake_features)``.
        lr_g: Adam learning rate of G.
        lr_d: Adam learning rate of D.
        beta1: Adam beta1 (both players).
        beta2: Adam beta2 (both players).
        adam_eps: Adam epsilon (both players).
        g_penalties: modules called as ``p(self, real, fake)`` and added to G's loss (none by default).
        g_ema: decay of an EMA of G's weights (Karras et al. 2018) updated after each G step; 0: off.
        num_fixed: number of fixed latent vectors (``fixed_z``, (num_fixed, z_dim)) for sample grids.
        on_nonfinite: what a non-finite loss of either player does: "stop" raises DivergenceError at
            the next log step (the last good checkpoint stays on disk), "skip" skips that update and
            counts it in ``skipped_steps``. All ranks agree before skipping.
        weight_check_every: batches between checks of the weights (0: only before a checkpoint);
            non-finite weights always stop.
        config: the run's resolved config, stored in checkpoints so scripts can rebuild the run.

    Raises:
        ValueError: a learning rate <= 0, a g_ema decay outside [0, 1), ``on_nonfinite`` not "stop"
            or "skip", or a negative ``weight_check_every``.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        g_objective: nn.Module,
        *,
        lr_g: float,
        lr_d: float,
        beta1: float = 0.5,
        beta2: float = 0.999,
        adam_eps: float = 1e-8,
        g_penalties: Sequence[nn.Module] = (),
        g_ema: float = 0.0,
        num_fixed: int = 64,
        on_nonfinite: str = "stop",
        weight_check_every: int = 10,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if lr_g <= 0 or lr_d <= 0:
            raise ValueError(f"learning rates must be > 0, got lr_g={lr_g}, lr_d={lr_d}")
        if not 0.0 <= g_ema < 1.0:
            raise ValueError(f"g_ema must be in [0, 1) (0: off), got {g_ema}")
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        if weight_check_every < 0:
            raise ValueError(f"weight_check_every must be >= 0 (0: off), got {weight_check_every}")
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.lr_g, self.lr_d, self.betas, self.adam_eps = lr_g, lr_d, (beta1, beta2), adam_eps
        self.g_ema = WeightEMA(generator, g_ema) if g_ema > 0 else None
        self.g_objective = g_objective
        self.g_penalties = nn.ModuleList(g_penalties)
        self.on_nonfinite, self.weight_check_every = on_nonfinite, weight_check_every
        self.config = dict(config or {})

        self.z_dim = int(generator.z_dim)
        fixed = torch.randn(num_fixed, self.z_dim, generator=torch.Generator().manual_seed(FIXED_Z_SEED))
        self.register_buffer("fixed_z", fixed)  # (num_fixed, z_dim)
        for name in ("images_seen", "d_steps", "g_steps", "skipped_steps"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long))
        self._g_count = (0, self.g_steps._version)  # (G steps, the version of g_steps it matches): see g_step_count
        # The first non-finite loss, kept on the device until a log step reads it: G step (-1: none),
        # network (0: D, 1: G) and value. It moves with the module but is not saved: a run stops or
        # skips at the step it happens.
        self.register_buffer("_bad", torch.full((3,), -1.0), persistent=False)

        self.shadow_due = False
        self.shadow_norms: dict[str, Tensor] | None = None
        self._restored_rng: dict[str, Any] | None = None  # from a checkpoint, applied at on_train_start
        self._restored_rng_per_rank: list[dict[str, Any]] | None = None  # the same for each rank of a DDP run

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

    # -- checkpoints: version, config and RNG, so a resumed run continues exactly ----------------
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from gan_lightning.torch_utils import rng_state
        from gan_lightning.version import __version__

        self.check_finite()  # never write weights that saw a non-finite update
        self._check_weights()
        rng = rng_state()
        stored = {"version": __version__, "config": self.config, "rng": rng}
        if attached_trainer(self) is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # Each rank draws its own latents; all of them write the checkpoint together, rank 0 the file.
            per_rank: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(per_rank, rng)
            stored["rng_per_rank"] = per_rank
        checkpoint["gan_lightning"] = stored

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("gan_lightning", {})
        state = checkpoint.get("state_dict")
        for name in LATER_COUNTERS if state is not None else ():
            state.setdefault(name, torch.zeros((), dtype=torch.long))
        self._restored_rng, self._restored_rng_per_rank = stored.get("rng"), stored.get("rng_per_rank")

    @override
    def on_train_start(self) -> None:
        # A resumed run's optimizers come back with the rates and betas they were saved with: this run's
        # flags win, as config.yaml says (a branch at a lower --lr_g trains at it; Adam's moments are kept).
        # (trainer.optimizers is [D, G], configure_optimizers' order; a bare test trainer has none)
        for opt, lr in zip(getattr(self.trainer, "optimizers", ()), (self.lr_d, self.lr_g)):
            for group in opt.param_groups:
                group.update(lr=lr, betas=self.betas, eps=self.adam_eps)
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
            if self.g_penalties:  # none: the loss stays the objective's tensor
                loss = loss + sum(p(self, real, fake) for p in self.g_penalties)
            bad = self._guard(loss, "G")
            g_opt.zero_grad(set_to_none=True)
            self.g_backward(loss, fake_logits)
        self._step(g_opt, bad)
        if self.g_ema is not None:
            self.g_ema.update(self.generator, skip=bad)  # a skipped step leaves the average, on the device
        count = self.g_step_count + 1
        self.g_steps += (bad == 0).long()
        self._g_count = (count, self.g_steps._version)
        return loss.detach()

    # -- the guard of every optimizer step --------------------------------------------------
    def _guard(self, loss: Tensor, network: str) -> Tensor:
        """1.0 where ``loss`` is not finite (on any rank), else 0.0, on the device: the update is then
        skipped (:meth:`_step`), counted in ``skipped_steps``, and under on_nonfinite="stop" the first one
        is reported at the next log step (:meth:`check_finite`)."""
        bad = (~torch.isfinite(loss.detach())).to(torch.float32)
        if attached_trainer(self) is not None and self.trainer.world_size > 1:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)  # all ranks skip or none
        this = torch.stack([self.g_steps.to(torch.float32), bad.new_tensor(float(network == "G")),
                            loss.detach().to(torch.float32)])
        first = (bad > 0) & (self._bad[0] < 0)
        self._bad = torch.where(first, this, self._bad)
        self.skipped_steps += bad.long()
        return bad

    def _step(self, opt: Any, bad: Tensor) -> None:
        """``opt.step()``, never applying an update whose loss was not finite (``bad`` is 1.0).

        An optimizer that takes ``found_inf`` (fused Adam, AdamW, SGD, Adagrad: torch marks them with
        ``_step_supports_amp_scaling``) skips on the device: it reads the flag and leaves the weights, its
        moments and its step count as they were, with no read of the flag on the host. Any other
        optimizer (foreach or for-loop Adam, RMSprop, a library user's own) is skipped on the host: one
        read of the flag per step, the price of an optimizer that cannot skip by itself.

        Under 16-mixed precision the GradScaler checks the gradients (which a non-finite loss makes
        non-finite too), skips the step and lowers its scale itself, so the step always goes to it.
        """
        inner = getattr(opt, "optimizer", opt)  # the torch optimizer inside Lightning's wrapper
        if getattr(inner, "_step_supports_amp_scaling", False):
            inner.found_inf = bad
            try:
                opt.step()
            finally:
                if hasattr(inner, "found_inf"):  # the GradScaler may have removed it already
                    del inner.found_inf
        elif self._grad_scaler() is not None or not bool(bad):
            opt.step()

    def _grad_scaler(self) -> Any:
        """The GradScaler of 16-mixed precision, or None."""
        trainer = attached_trainer(self)
        return getattr(getattr(trainer, "precision_plugin", None), "scaler", None) if trainer else None

    def check_finite(self) -> None:
        """Raise DivergenceError if a loss was not finite since the run started (on_nonfinite="stop").

        One read of the device; called at log steps and before a checkpoint is written, so the weights
        that are saved never saw the bad update (it was skipped)."""
        if self.on_nonfinite != "stop":
            return
        step, network, value = self._bad.tolist()
        if step >= 0:
            raise DivergenceError(
                f"non-finite {'G' if network else 'D'} loss ({value}) at G step {int(step)}; stopped without "
                "saving, the last good checkpoint is kept (--on_nonfinite skip skips such steps instead)"
            )

    def _check_weights(self) -> None:
        """Raise DivergenceError if a weight of D or G is not finite (under either on_nonfinite)."""
        for name, net in (("D", self.discriminator), ("G", self.generator)):
            norms = torch._foreach_norm([p.detach() for p in net.parameters()])
            if norms and not bool(torch.isfinite(torch.stack(norms)).all()):
                raise DivergenceError(
                    f"non-finite weights in {name} after G step {self.g_step_count}; stopped without "
                    "saving, the last good checkpoint is kept"
                )

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # At Lightning's log steps (counted over epochs, as Trainer(log_every_n_steps)): the only
        # device reads of a training step happen there.
        trainer = attached_trainer(self)
        done = batch_number(trainer) if trainer is not None else batch_idx + 1
        if self.weight_check_every and done % self.weight_check_every == 0:
            self.check_finite()
            self._check_weights()

    def _count_images(self, real: Tensor) -> None:
        """Add a batch of real images, over all processes, to ``images_seen``."""
        world = self.trainer.world_size if attached_trainer(self) is not None else 1
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

        if self.g_penalties or not isinstance(self.g_objective, AdversarialObjective):
            return None
        if attached_trainer(self) is not None and str(self.trainer.precision).startswith("16"):
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
        """[d_opt, g_opt]: Adam for each player, in that order; fused where this torch build has it for the
        networks' device and dtype (one kernel per step, and a skip on the device, see :meth:`_step`)."""
        return [adam(self.discriminator.parameters(), lr=self.lr_d, betas=self.betas, eps=self.adam_eps),
                adam(self.generator.parameters(), lr=self.lr_g, betas=self.betas, eps=self.adam_eps)]


def adam(params: Any, **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam(params, fused=True, **kwargs)``, or the default (foreach) Adam where torch has no
    fused kernel for those parameters (older torch on the CPU, say)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, **kwargs)
