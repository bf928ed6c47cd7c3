"""Scoring G's samples, one way for training (MetricsCallback) and for a checkpoint (scripts/evaluate.py):
mode coverage of 2-D mixtures, FID/KID/IS/precision-recall/density-coverage of images in one feature space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from gan_lightning.metrics.fidelity import FidelityMetrics, generate_samples
from gan_lightning.metrics.keys import metric_key
from gan_lightning.metrics.mode_coverage import LOGGED, dataset_mode_coverage


@dataclass(frozen=True)
class Scorer:
    """How the samples of one evaluation are scored and named.

    Args:
        dataset: the data set G was trained on (a mixture for points).
        num_samples: generated samples per evaluation (the names say it).
        fidelity: the image metrics against their reference; None for 2-D points (mode coverage).
        skip: image metrics left out (those :meth:`FidelityMetrics.problems` named).
    """

    dataset: str
    num_samples: int
    fidelity: FidelityMetrics | None = None
    skip: frozenset[str] = frozenset()

    def rows(self, generate: Callable[[Tensor], Tensor], z_dim: int, start: int, end: int, seed: int,
             batch_size: int, device: torch.device | str, progress: bool = False,
             desc: str = "generating") -> dict[str, Tensor]:
        """What is scored of samples ``start..end-1`` (:func:`generate_samples`): ``{"points": (N, 2)}``, or
        the extractor's features ``{layer: (N, D)}`` on the CPU."""
        batches = generate_samples(generate, z_dim, start, end, seed, batch_size, device, progress, desc)
        if self.fidelity is None:
            return {"points": torch.cat(list(batches)).float()}  # (N, 2)
        self.fidelity.extractor.to(device)
        return self.fidelity.features(batches)

    def values(self, rows: dict[str, Tensor]) -> dict[str, float]:
        """The raw values of all the samples' :meth:`rows`: ``modes_covered``, ``high_quality``, ``num_modes``,
        ``min_per_mode`` of points; ``fid``, ``kid_mean``, ... of images."""
        if self.fidelity is None:
            return dataset_mode_coverage(rows["points"], self.dataset)
        return self.fidelity.score(rows, skip=self.skip)

    def key(self, value: str, ema: bool = False) -> str:
        """The logged name of raw value ``value`` (:func:`metric_key`; ``ema``: samples of G's EMA)."""
        if self.fidelity is None:
            return metric_key(value, self.num_samples, ema=ema)
        extractor = self.fidelity.extractor
        return metric_key(value, self.num_samples, extractor.spec.short, extractor.sha256, ema)

    def score(self, rows: dict[str, Tensor], ema: bool = False) -> dict[str, float]:
        """The logged values of :meth:`rows`: those of :meth:`values` a run logs, under their :meth:`key`."""
        values = self.values(rows)
        return {self.key(k, ema): values[k] for k in (LOGGED if self.fidelity is None else values)}
