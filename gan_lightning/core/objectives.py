"""Generator objectives: what G minimizes, called as ``objective(module, real, fake_logits, fake_features)``.

The default wraps a pure loss of logits from losses.py; other objectives (feature matching,
Salimans et al. 2016) use D's features instead. The GAN module calls its objective at one place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan_lightning.core.losses import GLoss


class AdversarialObjective(nn.Module):
    """G minimizes ``g_loss(D(G(z)))``, a pure function of the fake logits (see losses.py)."""

    def __init__(self, g_loss: GLoss) -> None:
        super().__init__()
        self.g_loss = g_loss

    def forward(self, module: nn.Module, real: Tensor, fake_logits: Tensor, fake_features: Tensor) -> Tensor:
        return self.g_loss(fake_logits)

    def extra_repr(self) -> str:
        return getattr(self.g_loss, "__name__", repr(self.g_loss))


def feature_matching_l2(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """mean_k (E_x f(x)_k - E_z f(G(z))_k)^2: the reference MNIST code's squared distance of batch means.

    Args:
        real_features: (B, F) features of real data.
        fake_features: (B', F) features of generated data.
    """
    return (real_features.mean(dim=0) - fake_features.mean(dim=0)).pow(2).mean()


def feature_matching_l1(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """mean_k |E_x f(x)_k - E_z f(G(z))_k|: the reference CIFAR/SVHN code's absolute distance of batch means."""
    return (real_features.mean(dim=0) - fake_features.mean(dim=0)).abs().mean()


FM_DISTANCES = {"l2": feature_matching_l2, "l1": feature_matching_l1}


class FeatureMatching(nn.Module):
    """Feature matching (Salimans et al. 2016, sec. 3.1): G minimizes ||E_x f(x) - E_z f(G(z))||_2^2.

    f is D's penultimate features by default: the ``fake_features`` the GAN module passes in, and
    ``module.discriminate(real)[1]`` computed here under ``torch.no_grad()`` (D is frozen during
    G's step, and the real side has no path to G). Both go through ``module.discriminate``, so
    instance noise and D's noise layers act on them as on the adversarial loss. The distance is
    averaged over features rather than summed (reference code), which only rescales G's step.

    With ``layer`` set, f is the output of that submodule of D instead, flattened to (B, F): a
    forward hook on it (registered here, so ``discriminator`` is needed) records its output at
    each D call. The objective reads what the hook recorded during the GAN module's
    ``discriminate(fake)`` that immediately precedes it in ``GAN._g_step``, then calls
    ``discriminate(real)`` for the real side.

    Calling D on the real batch once more in G's step also updates the running statistics of any
    BatchNorm in D (D is in training mode); it does not change D's weights.

    Args:
        distance: "l2" (mean squared difference of batch means; the reference MNIST code) or
            "l1" (mean absolute difference; the reference CIFAR/SVHN code).
        layer: name of a submodule of the discriminator (as in ``named_modules()``, e.g.
            ``"body.4"``) whose output is matched; "" for the penultimate features.
        discriminator: the discriminator to hook; required when ``layer`` is set.

    Raises:
        ValueError: on an unknown distance, a layer without a discriminator, or a layer name
            that is not a submodule of the discriminator (the message lists valid names).

    Example:
        >>> objective = FeatureMatching("l1")
        >>> # GAN(g, d, d_loss, g_loss, g_objective=objective)
    """

    def __init__(self, distance: str = "l2", layer: str = "", discriminator: nn.Module | None = None) -> None:
        super().__init__()
        if distance not in FM_DISTANCES:
            raise ValueError(f"feature matching distance {distance!r} is unknown; choose one of {list(FM_DISTANCES)}")
        self.distance, self.layer = distance, layer
        self._captured: Tensor | None = None  # the hooked layer's last output; not state
        if layer:
            if discriminator is None:
                raise ValueError(f"feature matching on layer {layer!r} needs the discriminator to hook")
            named = dict(discriminator.named_modules())
            if layer not in named:
                names = [n for n in named if n]
                shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
                raise ValueError(
                    f"feature matching layer {layer!r} is not a submodule of {type(discriminator).__name__}; "
                    f"valid names: {shown}"
                )
            self._hook = named[layer].register_forward_hook(self._capture)  # handle: .remove() detaches

    def _capture(self, layer: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._captured = output

    def _take(self) -> Tensor:
        out, self._captured = self._captured, None
        if out is None:
            raise RuntimeError(f"feature matching layer {self.layer!r} recorded nothing: call D before the objective")
        return out.flatten(1)  # (B, *S) -> (B, F)

    def forward(self, module: nn.Module, real: Tensor, fake_logits: Tensor, fake_features: Tensor) -> Tensor:
        """Scalar distance between the mean real and mean generated features.

        Args:
            module: the GAN module; D is called through ``module.discriminate``.
            real: (B, *data_shape) real batch.
            fake_logits: (B',) D's logits of the generated batch (unused).
            fake_features: (B', F) D's penultimate features of the generated batch, with G's graph.
        """
        if self.layer:
            fake_f = self._take()  # recorded by discriminate(fake) just before this call
            if fake_f.shape[0] != fake_features.shape[0]:
                raise RuntimeError(
                    f"feature matching layer {self.layer!r} recorded a batch of {fake_f.shape[0]}, "
                    f"not the {fake_features.shape[0]} generated samples: call discriminate(fake) right before"
                )
            with torch.no_grad():
                module.discriminate(real)
                real_f = self._take()  # (B, F)
        else:
            fake_f = fake_features  # (B', F)
            with torch.no_grad():
                real_f = module.discriminate(real)[1]  # (B, F)
        return FM_DISTANCES[self.distance](real_f, fake_f)

    def extra_repr(self) -> str:
        return f"distance={self.distance!r}" + (f", layer={self.layer!r}" if self.layer else "")
