"""Loss values against hand-worked numbers, and the direction each loss pushes the logits."""

import math

import pytest
import torch
from torch.testing import assert_close

from gan_lightning.core.losses import (
    LOSSES,
    d_bce_loss,
    d_hinge_loss,
    d_least_squares_loss,
    d_wasserstein_loss,
    g_hinge_loss,
    g_least_squares_loss,
    g_minimax_loss,
    g_nonsaturating_loss,
    g_wasserstein_loss,
)

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sp(x: float) -> float:  # softplus by hand: log(1 + e^x)
    return math.log(1.0 + math.exp(x))


def t(x: float) -> torch.Tensor:
    return torch.tensor(x)


def test_d_bce_value():
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f)
    expected = (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert_close(d_bce_loss(REAL, FAKE), t(expected))


def test_d_bce_one_sided_smoothing_value():
    a = 0.9
    real_terms = [a * sp(-r) + (1 - a) * sp(r) for r in (2.0, -1.0)]
    expected = sum(real_terms) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert_close(d_bce_loss(REAL, FAKE, real_target=a), t(expected))


def test_bce_at_zero_logits_is_two_log_two():
    zeros = torch.zeros(4)
    assert_close(d_bce_loss(zeros, zeros), t(2 * math.log(2.0)))


def test_g_minimax_value_is_log_one_minus_d():
    d = [1 / (1 + math.exp(-f)) for f in (0.5, -3.0)]
    expected = sum(math.log(1 - x) for x in d) / 2
    assert_close(g_minimax_loss(FAKE), t(expected))


def test_g_nonsaturating_value_is_minus_log_d():
    d = [1 / (1 + math.exp(-f)) for f in (0.5, -3.0)]
    expected = -sum(math.log(x) for x in d) / 2
    assert_close(g_nonsaturating_loss(FAKE), t(expected))


def test_wasserstein_values():
    assert_close(d_wasserstein_loss(REAL, FAKE), t((0.5 - 3.0) / 2 - (2.0 - 1.0) / 2))
    assert_close(g_wasserstein_loss(FAKE), t(-(0.5 - 3.0) / 2))


def test_hinge_values():
    # relu(1 - 2) = 0, relu(1 + 1) = 2; relu(1 + 0.5) = 1.5, relu(1 - 3) = 0
    assert_close(d_hinge_loss(REAL, FAKE), t((0 + 2) / 2 + (1.5 + 0) / 2))
    assert_close(g_hinge_loss(FAKE), t(1.25))


def test_least_squares_values():
    expected_d = 0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3.0**2) / 2
    assert_close(d_least_squares_loss(REAL, FAKE), t(expected_d))
    assert_close(g_least_squares_loss(FAKE), t(0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_d_loss_pushes_real_up_and_fake_down(name):
    # Logits between the targets of every loss (least squares aims fakes at 0, reals at 1).
    real = torch.tensor([-0.3, 0.2], requires_grad=True)
    fake = torch.tensor([0.1, 0.4], requires_grad=True)
    LOSSES[name].d(real, fake).backward()
    # Gradient descent moves logits against the gradient: real logits rise, fake ones fall.
    assert (real.grad < 0).all(), real.grad
    assert (fake.grad > 0).all(), fake.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_g_loss_pushes_fake_up(name):
    fake = torch.tensor([0.1, -0.4], requires_grad=True)
    LOSSES[name].g(fake).backward()
    assert (fake.grad < 0).all(), fake.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_return_scalars(name):
    pair = LOSSES[name]
    assert pair.d(REAL, FAKE).shape == ()
    assert pair.g(FAKE).shape == ()


def test_minimax_saturates_where_nonsaturating_does_not():
    """Arjovsky & Bottou 2017, Thm 2.4: as D(G(z)) -> 0 the minimax gradient vanishes."""
    confident = torch.tensor([-10.0], requires_grad=True)
    g_minimax_loss(confident).backward()
    minimax_grad = confident.grad.abs().item()
    confident.grad = None
    g_nonsaturating_loss(confident).backward()
    nonsat_grad = confident.grad.abs().item()
    assert minimax_grad == pytest.approx(1 / (1 + math.exp(10.0)), rel=1e-4)  # sigmoid(-10)
    assert nonsat_grad == pytest.approx(1 / (1 + math.exp(-10.0)), rel=1e-4)  # sigmoid(10)
