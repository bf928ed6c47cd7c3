"""Gradient penalty against a critic whose input gradient is known; weight clipping."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from gan_lightning.core.penalties import GradientPenalty, WeightClip


class LinearCritic(nn.Module):
    """D(x) = w . x: its input gradient is w everywhere, so ||grad|| = ||w||."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.calls = 0

    def discriminate(self, x):
        self.calls += 1
        return x.flatten(1) @ self.w, x.flatten(1)


@pytest.mark.parametrize("w, weight", [([3.0, 4.0], 10.0), ([0.6, 0.8], 2.0), ([0.0, 0.5], 1.0)])
def test_gradient_penalty_value(w, weight):
    critic = LinearCritic(torch.tensor(w))
    real, fake = torch.randn(8, 2), torch.randn(8, 2) + 3
    norm = torch.tensor(w).norm().item()
    value = GradientPenalty(weight)(critic, real, fake)
    assert_close(value, torch.tensor(weight * (norm - 1) ** 2))
    assert critic.calls == 1  # D is called through the module's one call site


def test_gradient_penalty_gradient_reaches_critic_weights():
    critic = LinearCritic(torch.tensor([3.0, 4.0]))
    GradientPenalty(1.0)(critic, torch.randn(4, 2), torch.randn(4, 2)).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = 2 * 4 * w / 5
    assert_close(critic.w.grad, torch.tensor([3.0, 4.0]) * 8 / 5)


def test_gradient_penalty_rejects_non_positive_weight():
    with pytest.raises(ValueError, match="> 0"):
        GradientPenalty(0.0)


def test_weight_clip_clamps_every_parameter():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(100)
    WeightClip(0.01)(net)
    for p in net.parameters():
        assert p.abs().max() <= 0.01 + 1e-9
    assert any((p.abs() == 0.01).any() for p in net.parameters())


def test_weight_clip_rejects_non_positive():
    with pytest.raises(ValueError):
        WeightClip(-1.0)
