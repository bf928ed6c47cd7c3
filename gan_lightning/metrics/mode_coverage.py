"""Mode coverage of the 2-D mixtures ``ring`` and ``grid``: how many modes G covers, and how well.

As in the unrolled-GAN paper (Metz et al. 2017, Sec. 3.1) and PacGAN (Lin et al. 2018, Sec. 5.1,
following VEEGAN): a generated point is *high quality* when it lies within ``num_std`` (3)
standard deviations of its nearest mode's centre; a mode is *covered* when at least
``min_per_mode`` high-quality points have it as their nearest mode. PacGAN draws 2,500 points and
uses a threshold of 20; here the threshold scales with the number of points,
``round(20 * N / 2500)`` (at least 1), so it stays the same share (0.8 %) of the samples and the
numbers at N = 2,500 are the paper's. Logged as ``modes_covered/2.5k`` and ``high_quality/2.5k``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gan_lightning.data.datasets import GRID_STD, RING_STD, grid_modes, ring_modes

PACGAN_SAMPLES = 2500
PACGAN_THRESHOLD = 20

MIXTURES: dict[str, tuple[Callable[[], Tensor], float]] = {
    "ring": (ring_modes, RING_STD),  # 8 modes
    "grid": (grid_modes, GRID_STD),  # 25 modes
}


def min_samples_per_mode(num_samples: int) -> int:
    """PacGAN's threshold (20 high-quality points at 2,500 samples), scaled with the sample count."""
    return max(1, round(PACGAN_THRESHOLD * num_samples / PACGAN_SAMPLES))


def mode_coverage(points: Tensor, modes: Tensor, std: float, num_std: float = 3.0,
                  min_per_mode: int | None = None) -> dict[str, float]:
    """Modes covered and the share of high-quality points.

    Args:
        points: (N, 2) generated points.
        modes: (K, 2) mode centres.
        std: standard deviation of each mode.
        num_std: a point within ``num_std * std`` of its nearest centre is high quality.
        min_per_mode: high-quality points a mode needs to count as covered; default
            :func:`min_samples_per_mode` of N.

    Returns:
        ``modes_covered`` (0..K), ``high_quality`` (share of the N points, 0..1), ``num_modes`` (K)
        and ``min_per_mode`` (the threshold used).

    Raises:
        ValueError: on wrong shapes or an empty set of points.
    """
    if points.dim() != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"points must be (N, 2) with N >= 1, got {tuple(points.shape)}")
    if modes.dim() != 2 or modes.shape[1] != 2:
        raise ValueError(f"modes must be (K, 2), got {tuple(modes.shape)}")
    threshold = min_samples_per_mode(len(points)) if min_per_mode is None else min_per_mode
    dist, nearest = torch.cdist(points.float().cpu(), modes.float().cpu()).min(dim=1)  # (N,), (N,)
    good = dist <= num_std * std  # (N,) high quality
    per_mode = torch.bincount(nearest[good], minlength=len(modes))  # (K,) high-quality points per mode
    return {
        "modes_covered": float((per_mode >= threshold).sum()),
        "high_quality": float(good.float().mean()),
        "num_modes": float(len(modes)),
        "min_per_mode": float(threshold),
    }


def dataset_mode_coverage(points: Tensor, dataset: str, min_per_mode: int | None = None) -> dict[str, float]:
    """:func:`mode_coverage` against the modes of built-in mixture ``dataset`` (``ring`` or ``grid``).

    Raises:
        KeyError: if ``dataset`` is not a mixture.
    """
    modes, std = MIXTURES[dataset]
    return mode_coverage(points, modes(), std, min_per_mode=min_per_mode)


LOGGED = ("modes_covered", "high_quality")  # what is logged; num_modes and min_per_mode are constants
