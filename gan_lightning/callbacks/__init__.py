"""Lightning callbacks: sample grids, D's accuracy and the JSD estimate, gradient norms, metrics of
G's samples, the in-training probe, checkpoints and stopping. Thin adapters over ``diagnostics``
and ``metrics``.

They work with any LightningModule that follows this protocol (the package's ``GAN`` and
``SemiSupervisedGAN`` do; ``tests/test_library.py`` trains one written from scratch):

- ``training_step`` returns a dict with the detached ``real_logits`` and ``fake_logits`` (B,) of
  its last D step (logit > 0: "real"): :class:`DiscriminatorAccuracy`.
- attributes ``generator`` and ``discriminator`` (the two ``nn.Module``s), ``discriminate(x) ->
  (logits (B,), features (B, F))``, the one place D is called, and ``sample_z(n) -> (n, z_dim)``:
  :class:`GradientNorms` (the shadow norms of both G costs are then measured after the batch on
  fresh latents; a module with ``g_backward(loss, fake_logits)`` that honours ``shadow_due`` and
  fills ``shadow_norms`` measures them inside G's own update instead, see
  ``gan_lightning.modules.base.GeneratorSystem``). An optional ``d_input`` module (instance noise)
  is applied by ``discriminate`` and its state is kept.
- ``discriminator`` alone: :class:`SpectralNorms` (the largest singular values of D's weights).
- ``generate(z) -> samples`` (eval mode, no grad) and ``z_dim``: :class:`MetricsCallback`; pass
  ``dataset=...`` (and ``image_size``) to it unless the module has a ``config`` dict holding them.
  A module with an EMA of G (``g_ema`` not None) also has ``generate(z, ema=...)`` and
  ``sampling_generator(ema)``: the metrics score the EMA (names ending in ``_ema``).

The run-control callbacks (:class:`SampleGrid`, :class:`ProbeCallback`, :class:`LastCheckpoint`,
:class:`StopAtGSteps`) also read a ``g_steps`` counter, and SampleGrid a ``fixed_z`` buffer and
``generate()`` without arguments; their docstrings say so.

May import: ``core``, ``data``, ``diagnostics``, ``metrics``, ``errors``, ``torch_utils``, ``images``,
``lightning_state`` (Lightning's private state: the batch count, the log step).
"""

from gan_lightning.callbacks.accuracy import DiscriminatorAccuracy, discriminator_stats
from gan_lightning.callbacks.grad_norms import GradientNorms
from gan_lightning.callbacks.metrics import MetricsCallback
from gan_lightning.callbacks.probe import ProbeCallback
from gan_lightning.callbacks.run_control import LastCheckpoint, StopAtGSteps
from gan_lightning.callbacks.samples import SampleGrid
from gan_lightning.callbacks.spectral_norm import SpectralNorms

__all__ = ["DiscriminatorAccuracy", "GradientNorms", "LastCheckpoint", "MetricsCallback", "ProbeCallback", "SampleGrid",
           "SpectralNorms", "StopAtGSteps", "discriminator_stats"]
