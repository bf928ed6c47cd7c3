"""Layers from Salimans et al. 2016, "Improved Techniques for Training GANs" (arXiv 1606.03498), one
file per technique:

- ``minibatch``: :class:`MinibatchDiscrimination` (sec. 3.2): D sees how close each example is to the others.
- ``vbn``: :class:`VirtualBatchNorm` (sec. 3.5): batch norm against a fixed reference batch, so an
  example's output does not depend on the rest of its minibatch.
- ``gaussian_noise`` and ``weight_norm``: the building blocks of the reference MNIST networks
  (Gaussian noise in D, weight normalization of Salimans & Kingma 2016).
- ``spectral_norm``: :func:`apply_spectral_norm` (Miyato et al. 2018, not from Salimans et al.): D's
  Linear and convolution weights divided by their largest singular value (``--d_spectral_norm``).

Each op is a function plus a thin module where that helps; the reference code is
openai/improved-gan (``mnist_svhn_cifar10/nn.py`` and ``imagenet/ops.py``).

May import: torch, ``errors``, ``torch_utils``. No Lightning.
"""

from gan_lightning.layers.gaussian_noise import GaussianNoise, gaussian_noise
from gan_lightning.layers.minibatch import MinibatchDiscrimination, add_minibatch_discrimination, minibatch_features
from gan_lightning.layers.vbn import VBN_SEED, VirtualBatchNorm, prepend_reference, reference_latents, virtual_batch_norm
from gan_lightning.layers.spectral_norm import (apply_spectral_norm, effective_weight, is_spectrally_normalized,
                                               weight_layers)
from gan_lightning.layers.weight_norm import init_weight_norm_from_data, is_weight_normalized, wn_linear

__all__ = ["VBN_SEED", "GaussianNoise", "MinibatchDiscrimination", "VirtualBatchNorm", "add_minibatch_discrimination",
           "apply_spectral_norm", "effective_weight", "gaussian_noise", "init_weight_norm_from_data",
           "is_spectrally_normalized", "is_weight_normalized", "minibatch_features", "prepend_reference",
           "reference_latents", "virtual_batch_norm", "weight_layers", "wn_linear"]
