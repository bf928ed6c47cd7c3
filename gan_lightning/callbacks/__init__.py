"""Callbacks: samples, discriminator diagnostics, gradient norms, probes."""

from gan_lightning.callbacks.accuracy import DiscriminatorAccuracy, discriminator_stats
from gan_lightning.callbacks.grad_norms import GradientNorms
from gan_lightning.callbacks.metrics import MetricsCallback
from gan_lightning.callbacks.run_control import LastCheckpoint, StopAtGSteps
from gan_lightning.callbacks.probe import ProbeCallback
from gan_lightning.callbacks.samples import SampleGrid

__all__ = ["DiscriminatorAccuracy", "GradientNorms", "LastCheckpoint", "MetricsCallback", "ProbeCallback", "SampleGrid", "StopAtGSteps", "discriminator_stats"]
