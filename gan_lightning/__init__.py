"""gan_lightning: train GANs with PyTorch Lightning and measure why they are unstable.

What a researcher imports in a notebook is here, by name::

    from gan_lightning import GAN, DiscriminatorAccuracy, GradientNorms, d_bce_loss, InstanceNoise

Importing the package is cheap: each name is imported from its module the first time it is used
(PEP 562), so ``import gan_lightning`` loads neither torch nor Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

from gan_lightning.version import __version__

# name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # the two LightningModules
    "GAN": "gan_lightning.modules.gan",
    "SemiSupervisedGAN": "gan_lightning.modules.semi_supervised",
    # losses of logits, D's decision, the LOSSES table
    **dict.fromkeys(("LOSSES", "LossPair", "d_bce_loss", "g_minimax_loss", "g_nonsaturating_loss", "d_wasserstein_loss",
                     "g_wasserstein_loss", "d_hinge_loss", "g_hinge_loss", "d_least_squares_loss",
                     "g_least_squares_loss", "says_real", "says_fake"), "gan_lightning.core.losses"),
    # instance noise and its schedules
    **dict.fromkeys(("InstanceNoise", "SCHEDULES", "make_schedule", "Constant", "Linear", "Exponential", "Cosine", "Step",
                     "Adaptive"), "gan_lightning.core.noise"),
    # what G minimizes, and the penalties and constraints
    **dict.fromkeys(("AdversarialObjective", "FeatureMatching"), "gan_lightning.core.objectives"),
    **dict.fromkeys(("GradientPenalty", "WeightClip", "HistoricalAveraging"), "gan_lightning.core.penalties"),
    # the techniques of Salimans et al. 2016 as layers
    **dict.fromkeys(("MinibatchDiscrimination", "add_minibatch_discrimination", "VirtualBatchNorm", "GaussianNoise",
                     "wn_linear"), "gan_lightning.layers"),
    # callbacks (any LightningModule that follows the protocol in gan_lightning.callbacks)
    **dict.fromkeys(("DiscriminatorAccuracy", "GradientNorms", "MetricsCallback", "ProbeCallback", "SampleGrid",
                     "LastCheckpoint", "StopAtGSteps", "discriminator_stats"), "gan_lightning.callbacks"),
    # measurements
    **dict.fromkeys(("generator_grad_norms", "PAPER_G_COSTS"), "gan_lightning.diagnostics.gradients"),
    "probe": "gan_lightning.diagnostics.probe",
    **dict.fromkeys(("FidelityMetrics", "Reference"), "gan_lightning.metrics.fidelity"),
    **dict.fromkeys(("metric_key", "metric_keys"), "gan_lightning.metrics.keys"),
    **dict.fromkeys(("mode_coverage", "dataset_mode_coverage"), "gan_lightning.metrics.mode_coverage"),
    # the config and the builders of a run from it
    **dict.fromkeys(("TrainConfig", "parse_args", "resolve"), "gan_lightning.config"),
    **dict.fromkeys(("build_datamodule", "build_module", "build_trainer"), "gan_lightning.build"),
    "DATASETS": "gan_lightning.data.datasets",
    "NETWORKS": "gan_lightning.networks",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gan_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
