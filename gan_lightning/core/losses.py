"""GAN losses as pure functions of discriminator logits.

Sign convention, used everywhere in gan_lightning: a higher logit means "more real".
For the losses built on the classifier D(x) = sigmoid(logit):
    log D(x)     = -softplus(-logit)
    log(1 - D(x)) = -softplus(logit)
Every loss returns a scalar mean over the batch and is *minimized* by the player it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

DLoss = Callable[[Tensor, Tensor], Tensor]
GLoss = Callable[[Tensor], Tensor]


def says_real(logits: Tensor) -> Tensor:
    """D's decision per example: True where it says "real" (logit > 0, i.e. D(x) = sigmoid(logit) > 1/2).

    The one definition of D's accuracy in the package: a real example is classified right where
    this is True, a generated one where :func:`says_fake` is.
    """
    return logits > 0


def says_fake(logits: Tensor) -> Tensor:
    """D's decision per example: True where it says "generated" (logit <= 0); see :func:`says_real`."""
    return logits <= 0


def d_bce_loss(real_logits: Tensor, fake_logits: Tensor, real_target: float = 1.0) -> Tensor:
    """Discriminator cross-entropy (Goodfellow et al. 2014), optionally one-sided smoothed.

    -[a log D(x) + (1 - a) log(1 - D(x))] - log(1 - D(G(z))), a = ``real_target``.
    With a = 1 this is -L(D, G) of Arjovsky & Bottou 2017, eq. (1); a < 1 is the one-sided
    label smoothing of Salimans et al. 2016, sec. 3.4 (fake targets stay 0).

    Args:
        real_logits: (B,) logits of real samples.
        fake_logits: (B,) logits of generated samples.
        real_target: target probability for real samples.

    Returns:
        Scalar loss.
    """
    real_term = real_target * F.softplus(-real_logits) + (1.0 - real_target) * F.softplus(real_logits)
    return real_term.mean() + F.softplus(fake_logits).mean()


def g_minimax_loss(fake_logits: Tensor) -> Tensor:
    """The original, saturating generator cost E_z[log(1 - D(G(z)))] = -softplus(logit).

    Its gradient vanishes as D nears optimal (Arjovsky & Bottou 2017, Thm 2.4).
    """
    return -F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """The -log D(G(z)) = softplus(-logit) cost; unstable near an optimal D (Thms 2.5-2.6)."""
    return F.softplus(-fake_logits).mean()


def d_wasserstein_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """WGAN critic loss (Arjovsky et al. 2017): E[f(G(z))] - E[f(x)].

    Needs a Lipschitz constraint: weight clipping or a gradient penalty (see penalties.py).
    """
    return fake_logits.mean() - real_logits.mean()


def g_wasserstein_loss(fake_logits: Tensor) -> Tensor:
    """WGAN generator loss: -E[f(G(z))]."""
    return -fake_logits.mean()


def d_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018): E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: Tensor) -> Tensor:
    """Hinge generator loss: -E[f(G(z))]."""
    return -fake_logits.mean()


def d_least_squares_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """LSGAN discriminator loss (Mao et al. 2017, a=0, b=c=1): 1/2 E[(f(x) - 1)^2] + 1/2 E[f(G(z))^2]."""
    return 0.5 * (real_logits - 1.0).pow(2).mean() + 0.5 * fake_logits.pow(2).mean()


def g_least_squares_loss(fake_logits: Tensor) -> Tensor:
    """LSGAN generator loss: 1/2 E[(f(G(z)) - 1)^2]."""
    return 0.5 * (fake_logits - 1.0).pow(2).mean()


@dataclass(frozen=True)
class LossPair:
    """A discriminator loss and the generator loss trained against it."""

    d: DLoss
    g: GLoss
    description: str


LOSSES: dict[str, LossPair] = {
    "minimax": LossPair(d_bce_loss, g_minimax_loss, "BCE for D; G minimizes log(1 - D(G(z))) (saturating)"),
    "nonsaturating": LossPair(d_bce_loss, g_nonsaturating_loss, "BCE for D; G minimizes -log D(G(z))"),
    "wasserstein": LossPair(d_wasserstein_loss, g_wasserstein_loss, "WGAN critic; use --weight_clip or --gp_weight"),
    "hinge": LossPair(d_hinge_loss, g_hinge_loss, "hinge loss for D; G maximizes D's logit"),
    "least_squares": LossPair(d_least_squares_loss, g_least_squares_loss, "LSGAN with targets 0/1"),
}
