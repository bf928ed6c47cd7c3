"""Semi-supervised GAN: a K-class discriminator whose "generated" class is implicit.

Salimans et al. 2016, "Improved Techniques for Training GANs" (arXiv 1606.03498), sec. 5. D is a
classifier with K + 1 outputs, the last meaning "generated". Fixing that last logit to 0 leaves K
logits l_1..l_K (B, K) and

    D(x) = Z(x) / (Z(x) + 1),  Z(x) = sum_k exp(l_k(x)),  so  D(x) = sigmoid(log Z(x)).

The real/fake logit is therefore ``logsumexp(l)`` and, under the convention of losses.py (higher
logit = more real; log D = -softplus(-logit), log(1 - D) = -softplus(logit)):

    L_supervised   = -E_{x,y~labeled} log p(y | x, y < K+1)   = cross_entropy(l, y)
    L_unsupervised = -w E_{x~data} log D(x) - w E_{z} log(1 - D(G(z)))
                   = w softplus(-lse(l_unl)) + w softplus(lse(l_fake))

with w = 1 in the paper's formula and w = 1/2 in the reference code (the default here).
G is trained by feature matching on D's penultimate features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from gan_lightning.layers import init_weight_norm_from_data
from gan_lightning.modules.base import GeneratorSystem
from gan_lightning.modules.ema import WeightEMA
from gan_lightning.core.objectives import FeatureMatching
from gan_lightning.torch_utils import eval_mode

# -- pure functions of logits ----------------------------------------------------------------


def k_plus_one_real_logit(class_logits: Tensor) -> Tensor:
    """The real/fake logit of a K+1 classifier whose "generated" logit is fixed at 0.

    D(x) = Z / (Z + 1) with Z = sum_k exp(l_k), i.e. D(x) = sigmoid(log Z): the logit is log Z.

    Args:
        class_logits: (B, K) logits of the K real classes.

    Returns:
        (B,) ``logsumexp`` over the classes; higher = more real.
    """
    return torch.logsumexp(class_logits, dim=-1)


def ssl_supervised_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """-E log p(y | x, y < K+1): cross-entropy on the K class logits (the fake class drops out).

    Args:
        class_logits: (B, K) logits of labeled examples.
        labels: (B,) classes in [0, K).
    """
    return F.cross_entropy(class_logits, labels)


def ssl_unsupervised_loss(unlabeled_logits: Tensor, fake_logits: Tensor, weight: float = 0.5) -> Tensor:
    """-w E_data log D(x) - w E_G log(1 - D(G(z))) with D = sigmoid(logsumexp(class logits)).

    Args:
        unlabeled_logits: (B, K) class logits of unlabeled real examples.
        fake_logits: (B', K) class logits of generated examples.
        weight: w, the weight of each term (reference code 1/2, paper formula 1).
    """
    real = k_plus_one_real_logit(unlabeled_logits)  # (B,)
    fake = k_plus_one_real_logit(fake_logits)  # (B',)
    return weight * (F.softplus(-real).mean() + F.softplus(fake).mean())


def ssl_d_loss(
    labeled_logits: Tensor, labels: Tensor, unlabeled_logits: Tensor, fake_logits: Tensor, unsup_weight: float = 0.5
) -> Tensor:
    """D's loss L_supervised + L_unsupervised (Salimans et al. 2016, sec. 5), a scalar.

    Args:
        labeled_logits: (B_l, K) class logits of labeled examples.
        labels: (B_l,) their classes.
        unlabeled_logits: (B_u, K) class logits of unlabeled real examples.
        fake_logits: (B_f, K) class logits of generated examples.
        unsup_weight: weight of each unsupervised term (see :func:`ssl_unsupervised_loss`).
    """
    return ssl_supervised_loss(labeled_logits, labels) + ssl_unsupervised_loss(
        unlabeled_logits, fake_logits, unsup_weight
    )


def linear_lr_scale(step: int, decay_steps: int) -> float:
    """Learning-rate factor falling linearly from 1 at step 0 to 0 at ``decay_steps`` (1 if that is 0)."""
    return max(0.0, 1.0 - step / decay_steps) if decay_steps else 1.0


def classification_errors(class_logits: Tensor, labels: Tensor) -> Tensor:
    """(B,) float 1.0 where ``argmax(class_logits) != labels``, else 0.0."""
    return (class_logits.argmax(-1) != labels).float()


# -- techniques ------------------------------------------------------------------------------


def init_examples(datamodule: Any, n: int, seed: int = 0) -> Tensor:
    """``n`` unlabeled training examples (B, *data_shape), the same on every rank (fixed seed)."""
    data = datamodule.unlabeled_dataset
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([torch.as_tensor(data[int(i)]) for i in index])


def init_discriminator_from_data(discriminator: nn.Module, x: Tensor) -> int:
    """Data-dependent init of D's weight-normalized layers on ``x``, as the reference.

    D runs in training mode, its Gaussian noise layers on (the reference's ``deterministic=False``
    init pass), so each unit starts with unit variance under the noise it trains with; the noise
    comes from the global RNG. Returns the number of layers initialized (0 for a D without weight
    normalization).
    """
    with eval_mode(discriminator, training=True):
        return init_weight_norm_from_data(discriminator, x, lambda v: discriminator.head(discriminator.features(v)))


# -- the system ------------------------------------------------------------------------------


class SemiSupervisedGAN(GeneratorSystem):
    """Semi-supervised GAN (Salimans et al. 2016, sec. 5) as a Lightning system.

    Per training batch ``{"labeled": (x_lab, y_lab), "unlabeled": x_unl, "unlabeled_g": x_unl2}`` (see
    :class:`~gan_lightning.data.semi_supervised.SemiSupervisedDataModule`): one D update on
    ``ssl_supervised_loss(lab) + ssl_unsupervised_loss(unl, G(z))``, then one G update on
    ``g_objective(self, x_unl2, fake_logits, fake_features)`` (feature matching by default) with a
    fresh z and the second unlabeled batch ``x_unl2`` (``x_unl`` when the batch has none), as the
    reference code draws fresh ones for its G step. D is only called through :meth:`classify`;
    :meth:`discriminate` gives the K+1 real/fake logit ``logsumexp(l)`` and features, the
    interface of the GAN module, so feature matching objectives and the gradient-norm callback
    work unchanged.

    After each D step an EMA of D's weights is updated (off with ``ema_decay=0``); validation and
    test classify the held-out split with it and log ``ssl/test_error`` (fraction misclassified,
    EMA weights; the live ones when the EMA is off) and ``ssl/test_error_live`` (live weights),
    both on the epoch. D and the EMA are in eval mode there (no Gaussian noise layers, no dropout).

    Counters are buffers saved in checkpoints (with ``data_initialized``): ``images_seen`` (unlabeled real images over all
    ranks), ``d_steps``, ``g_steps``. ``training_step`` returns detached ``real_logits`` (B,)
    (logsumexp of the unlabeled batch's class logits), ``fake_logits`` (B,) of the D update, and
    the losses, so the DiscriminatorAccuracy callback reads D's real/fake accuracy as for a GAN.

    Args:
        generator: maps z (B, z_dim) to samples; must have a ``z_dim`` attribute.
        discriminator: has ``features(x) -> (B, F)`` and ``head``, a module mapping (B, F) to the
            K class logits (B, K), e.g. ``Linear(F, K)``; K = ``num_classes``.
        num_classes: K, checked against the shape of D's output at every call.
        lr_g: Adam learning rate of G (reference code: 0.003).
        lr_d: Adam learning rate of D (reference code: 0.003).
        beta1: Adam beta1 (reference code: 0.5).
        beta2: Adam beta2.
        adam_eps: Adam epsilon; the reference code adds 1e-8 under the square root, about 1e-4 here.
        unsup_weight: weight of each unsupervised term; 0.5 as the reference code (the paper's
            formula is 1). 0 trains D on labels alone (G still runs).
        ema_decay: decay of the EMA of D's weights used for evaluation; 0 turns it off.
        lr_decay_steps: if > 0, both learning rates fall linearly from their value at D step 0
            to 0 at this many D steps (the reference decays linearly over its last epochs);
            0 keeps them constant.
        g_objective: what G minimizes, ``g_objective(self, real, fake_logits, fake_features)``;
            default ``FeatureMatching("l2")`` on D's penultimate features (reference MNIST code).
        data_init: at the start of training (not on resume), initialize D's weight-normalized
            layers from this many unlabeled training examples (``trainer.datamodule.unlabeled_dataset``)
            so each unit starts with zero mean and unit variance, as the reference code does on 500
            images; 0 turns it off. A D without weight normalization is left as it is.
        g_ema: decay of an EMA of G's weights updated after each G step (0: off; 0.999 is usual);
            samples and metrics then come from it (see ``GeneratorSystem.generate``).
        num_fixed: number of fixed latent vectors kept for sample grids.
        on_nonfinite: what a non-finite loss of either player does, as in the GAN module: "stop" raises
            DivergenceError (the last good checkpoint stays on disk), "skip" skips that update (D's
            EMA and G's EMA stay too) and counts it in ``skipped_steps``. Weights are checked every
            ``weight_check_every`` batches; non-finite weights always stop.
        weight_check_every: batches between checks of the weights (0: only before a checkpoint).
        config: the run's resolved config, stored in checkpoints.

    Raises:
        ValueError: on a non-positive learning rate, K < 2, a negative weight, a decay outside
            [0, 1), negative ``lr_decay_steps`` or an unknown ``on_nonfinite``.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        num_classes: int = 10,
        *,
        lr_g: float = 3e-3,
        lr_d: float = 3e-3,
        beta1: float = 0.5,
        beta2: float = 0.999,
        adam_eps: float = 1e-8,
        unsup_weight: float = 0.5,
        ema_decay: float = 0.999,
        lr_decay_steps: int = 0,
        g_objective: nn.Module | None = None,
        data_init: int = 500,
        num_fixed: int = 64,
        g_ema: float = 0.0,
        on_nonfinite: str = "stop",
        weight_check_every: int = 10,
        config: dict[str, Any] | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if unsup_weight < 0:
            raise ValueError(f"unsup_weight must be >= 0, got {unsup_weight}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no EMA), got {ema_decay}")
        if lr_decay_steps < 0:
            raise ValueError(f"lr_decay_steps must be >= 0 (0: constant), got {lr_decay_steps}")
        if data_init < 0 or data_init == 1:
            raise ValueError(f"data_init must be 0 (off) or >= 2 examples, got {data_init}")
        super().__init__(
            generator, discriminator, g_objective if g_objective is not None else FeatureMatching("l2"),
            lr_g=lr_g, lr_d=lr_d, beta1=beta1, beta2=beta2, adam_eps=adam_eps, g_ema=g_ema, num_fixed=num_fixed,
            on_nonfinite=on_nonfinite, weight_check_every=weight_check_every, config=config,
        )
        self.data_init = data_init
        self.num_classes = num_classes
        self.unsup_weight = unsup_weight
        self.lr_decay_steps = lr_decay_steps
        self.ema = WeightEMA(discriminator, ema_decay) if ema_decay > 0 else None
        self.register_buffer("data_initialized", torch.zeros((), dtype=torch.long))  # 1 once D is initialized from data

    # -- data-dependent initialization ------------------------------------------------------
    @override
    def on_train_start(self) -> None:
        """Restore the RNG of a resumed run (see GeneratorSystem), then initialize D's
        weight-normalized layers from data once (not again on resume)."""
        super().on_train_start()
        if self.data_init and not int(self.data_initialized):
            x = init_examples(self.trainer.datamodule, self.data_init).to(self.device)
            init_discriminator_from_data(self.discriminator, x)
            if self.ema is not None:
                self.ema.net.load_state_dict(self.discriminator.state_dict())
            self.data_initialized.fill_(1)

    # -- the one call site of D -------------------------------------------------------------
    def classify(self, x: Tensor, *, ema: bool = False) -> tuple[Tensor, Tensor]:
        """Call D (or its EMA copy) on ``x``.

        Args:
            x: (B, *data_shape) samples.
            ema: use the EMA weights (the live ones when the EMA is off).

        Returns:
            class logits (B, K) and penultimate features (B, F).
        """
        d = self.ema.net if ema and self.ema is not None else self.discriminator
        features = d.features(x)  # (B, F)
        logits = d.head(features)  # (B, K)
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the discriminator's head must output (B, {self.num_classes}) class logits, got {tuple(logits.shape)}; "
                f"build it with num_outputs={self.num_classes}"
            )
        return logits, features

    def discriminate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The K+1 real/fake logit logsumexp(l) (B,) and features (B, F), as ``GAN.discriminate``."""
        class_logits, features = self.classify(x)
        return k_plus_one_real_logit(class_logits), features

    # -- training ---------------------------------------------------------------------------
    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        x_lab, y_lab = batch["labeled"]  # (B_l, *data_shape), (B_l,)
        real = batch["unlabeled"]  # (B, *data_shape)
        d_opt, g_opt = self.optimizers()
        scale = linear_lr_scale(self.g_step_count, self.lr_decay_steps)  # one D step per G step
        for opt, lr in ((d_opt, self.lr_d), (g_opt, self.lr_g)):
            for group in opt.param_groups:
                group["lr"] = lr * scale
        real_g = batch.get("unlabeled_g", real)  # (B, *data_shape): G's step sees its own batch
        with torch.no_grad():
            fake = self.generator(self.sample_z(len(real)))  # (B, *data_shape)
        d_sup, d_unsup, lab_logits, real_logits, fake_logits = self._d_step(d_opt, x_lab, y_lab, real, fake)
        g_loss = self._g_step(g_opt, real_g, self.generator(self.sample_z(len(real_g))))
        self._count_images(real)
        d_loss = d_sup + d_unsup
        self.log_dict({"loss/d": d_loss, "loss/g": g_loss}, prog_bar=True)
        self.log_dict({
            "loss/d_supervised": d_sup,
            "loss/d_unsupervised": d_unsup,
            "ssl/train_error_labeled": classification_errors(lab_logits, y_lab).mean(),
            "ssl/lr_scale": scale,
        })
        return {"real_logits": real_logits, "fake_logits": fake_logits, "d_loss": d_loss, "g_loss": g_loss}

    def _d_step(
        self, d_opt: Any, x_lab: Tensor, y_lab: Tensor, real: Tensor, fake: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        lab_logits, _ = self.classify(x_lab)  # (B_l, K)
        unl_logits, _ = self.classify(real)  # (B, K)
        fake_logits, _ = self.classify(fake)  # (B, K)
        sup = ssl_supervised_loss(lab_logits, y_lab)
        unsup = ssl_unsupervised_loss(unl_logits, fake_logits, self.unsup_weight)
        loss = sup + unsup
        bad = self._guard(loss, "D")
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._step(d_opt, bad)
        if self.ema is not None:
            self.ema.update(self.discriminator, skip=bad)  # a skipped step leaves the average, on the device
        self.d_steps += (bad == 0).long()
        return (
            sup.detach(), unsup.detach(), lab_logits.detach(),
            k_plus_one_real_logit(unl_logits.detach()), k_plus_one_real_logit(fake_logits.detach()),
        )

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, batch: Any) -> None:
        x, y = batch  # (B, *data_shape), (B,)
        kw = dict(on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        self.log("ssl/test_error", classification_errors(self.classify(x, ema=True)[0], y).mean(), prog_bar=True, **kw)
        self.log("ssl/test_error_live", classification_errors(self.classify(x)[0], y).mean(), **kw)

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch)

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch)
