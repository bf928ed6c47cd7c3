"""Callbacks: samples, discriminator diagnostics, metrics, probes."""

from gan_lightning.callbacks.samples import SampleGrid

__all__ = ["SampleGrid"]
