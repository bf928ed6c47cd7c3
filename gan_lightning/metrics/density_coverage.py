"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
Models", eq. 6-7), in chunks on torch tensors.

With real features X_1..X_N, generated Y_1..Y_M and NND_k(X_i) the distance from X_i to its k-th
nearest real neighbour (itself not counted), B(X_i) the open ball of that radius around X_i:

    density  = 1 / (k M) * sum_j sum_i 1[Y_j in B(X_i)]
    coverage = 1 / N     * sum_i 1[exists j: Y_j in B(X_i)]

Density rewards samples where real samples are dense (it can pass 1; 1 on average when both sets
come from one distribution); coverage is the share of real neighbourhoods that hold a generated
sample (1 - 2^-k on average for one distribution: 0.969 at k = 5). Unlike precision and recall they
are robust to outliers. The authors' ``prdc`` package computes the same numbers from full N x N
distance matrices in numpy (tests/test_density_coverage.py checks the two agree); here distances are
taken ``chunk`` rows at a time, so 50,000 x 50,000 features fit in memory, on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEIGHBORHOOD = 5  # k of the paper


def knn_radii(real: Tensor, k: int = NEIGHBORHOOD, chunk: int = 2048) -> Tensor:
    """(N,) distance from each real feature to its k-th nearest real neighbour (itself excluded).

    Raises:
        ValueError: fewer than k + 1 real features.
    """
    if len(real) < k + 1:
        raise ValueError(f"density and coverage need more than k = {k} real samples, got {len(real)}")
    radii = [torch.cdist(part, real).topk(k + 1, dim=1, largest=False).values[:, k] for part in real.split(chunk)]
    return torch.cat(radii)


def density_coverage(real: Tensor, fake: Tensor, k: int = NEIGHBORHOOD, chunk: int = 2048) -> dict[str, float]:
    """Density and coverage of generated features ``fake`` (M, D) against real features ``real`` (N, D).

    Computed in float64 (the ball tests compare distances; float32 rounding would flip ties).

    Returns:
        ``{"density": ..., "coverage": ...}``.

    Raises:
        ValueError: fewer than k + 1 real features, no generated ones, or features of different widths.
    """
    if fake.dim() != 2 or real.dim() != 2 or fake.shape[1] != real.shape[1] or len(fake) == 0:
        raise ValueError(f"need (N, D) real and (M, D) generated features, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    real, fake = real.double(), fake.to(real.device).double()
    radii = knn_radii(real, k, chunk)  # (N,)
    inside_count = torch.zeros((), dtype=torch.float64, device=real.device)
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for part in fake.split(chunk):
        inside = torch.cdist(part, real) < radii  # (chunk, N): generated sample j in real ball i
        inside_count += inside.sum()
        covered |= inside.any(dim=0)
    return {"density": float(inside_count) / (k * len(fake)), "coverage": float(covered.double().mean())}
