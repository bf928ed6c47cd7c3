"""The probe's discriminator recipe: how ``scripts/probe_discriminator.py`` and ``ProbeCallback`` train D.

Arjovsky & Bottou's Theorems 2.4 and 2.6 are about a D close to the optimal one, so the probe
trains a D built to get close within its iterations (docs/probe_results.md has the measurements):

- the run's D architecture with layer norm instead of batch norm: with batch norm D's output on an
  example depends on the rest of its batch, and a batch of generated samples alone is normalized
  by its own statistics, which the optimal D does not have;
- Adam at 3e-3 (15x DCGAN's 2e-4; betas 0.5, 0.999), decaying linearly to 0 over the D
  iterations, so the last updates refine D instead of jittering it.

Kept apart from :mod:`gan_lightning.diagnostics.probe` so the scripts can show these defaults without
importing torch.
"""

PROBE_NORM = "layer"  # normalization of the probe's D (the run's D architecture otherwise)
PROBE_NORMS = ("layer", "none", "batch")  # what --probe_norm accepts (an architecture may accept fewer)
PROBE_LR = 3e-3  # Adam's learning rate at the first D update
LR_SCHEDULES = ("linear", "constant")  # linear: lr * (1 - t / d_iters) at update t
PROBE_SCHEDULE = "linear"
