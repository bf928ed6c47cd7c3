"""Generator objectives: what G minimizes, called as ``objective(module, real, fake_logits, fake_features)``.

The default wraps a pure loss of logits from losses.py; other objectives (feature matching,
Salimans et al. 2016) use D's features instead. The GAN module calls its objective at one place.
"""

from __future__ import annotations

from torch import Tensor, nn

from gan_lightning.losses import GLoss


class AdversarialObjective(nn.Module):
    """G minimizes ``g_loss(D(G(z)))``, a pure function of the fake logits (see losses.py)."""

    def __init__(self, g_loss: GLoss) -> None:
        super().__init__()
        self.g_loss = g_loss

    def forward(self, module: nn.Module, real: Tensor, fake_logits: Tensor, fake_features: Tensor) -> Tensor:
        return self.g_loss(fake_logits)

    def extra_repr(self) -> str:
        return getattr(self.g_loss, "__name__", repr(self.g_loss))
