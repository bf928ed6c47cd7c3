"""G objectives (feature matching) and one-sided label smoothing, checked against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from gan_lightning.core.losses import d_bce_loss, g_nonsaturating_loss
from gan_lightning.modules import GAN
from gan_lightning.networks import MLPDiscriminator, MLPGenerator
from gan_lightning.core.objectives import AdversarialObjective, FeatureMatching
from gan_lightning.torch_utils import frozen


class IdentityFeatures(nn.Module):
    """A stand-in GAN module whose D features are the input itself: f(x) = x."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def discriminate(self, x):
        self.calls += 1
        return x.sum(1), x


REAL = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # batch mean (2, 3)
FAKE = torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0]])  # batch mean (1, 1): differences (1, 2)


@pytest.mark.parametrize("distance, expected", [("l2", (1 + 4) / 2), ("l1", (1 + 2) / 2)])
def test_feature_matching_value_by_hand(distance, expected):
    module = IdentityFeatures()
    value = FeatureMatching(distance)(module, REAL, FAKE.sum(1), FAKE)
    assert_close(value, torch.tensor(expected))
    assert module.calls == 1  # only the real batch goes through D here; fake features are passed in


def tiny_gan(objective: nn.Module | None = None) -> GAN:
    g = MLPGenerator(z_dim=3, data_shape=(2,), width=8)
    d = MLPDiscriminator(data_shape=(2,), width=8)
    return GAN(g, d, d_bce_loss, g_nonsaturating_loss, g_objective=objective)


@pytest.mark.parametrize("distance", ["l2", "l1"])
def test_feature_matching_gradient_reaches_g_not_d(distance):
    module = tiny_gan(FeatureMatching(distance))
    real = (torch.randn(16, 2) + 2.0).requires_grad_(True)
    z = torch.randn(16, 3)
    with frozen(module.discriminator):  # as in GAN._g_step
        fake = module.generator(z)
        logits, features = module.discriminate(fake)
        loss = module.g_objective(module, real, logits, features)
        loss.backward()
    # the value is the paper's ||E f(x) - E f(G(z))||^2 (mean over features) on D's penultimate layer
    with torch.no_grad():
        diff = module.discriminator.features(real).mean(0) - module.discriminator.features(module.generator(z)).mean(0)
    expected = diff.pow(2).mean() if distance == "l2" else diff.abs().mean()
    assert_close(loss.detach(), expected)
    for name, p in module.generator.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, p in module.discriminator.named_parameters():
        assert p.grad is None, name
    assert real.grad is None  # the real side is computed without a graph


def test_feature_matching_on_a_named_layer():
    module = tiny_gan()
    d = module.discriminator
    objective = FeatureMatching("l2", layer="body.1", discriminator=d)  # the first hidden Linear
    module.g_objective = objective
    real, z = torch.randn(8, 2) + 1.0, torch.randn(8, 3)
    fake = module.generator(z)
    logits, features = module.discriminate(fake)  # records the layer's output on the fake batch
    loss = objective(module, real, logits, features)
    # each recording is used once: calling the objective without a fresh discriminate(fake) is an error
    with pytest.raises(RuntimeError, match="recorded nothing"):
        objective(module, real, logits, features)
    with torch.no_grad():
        first = d.body[:2]  # Flatten, Linear
        expected = (first(real).mean(0) - first(fake).mean(0)).pow(2).mean()
    assert_close(loss.detach(), expected)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.generator.parameters())
    with pytest.raises(RuntimeError, match="not the 8 generated"):  # a recording of another batch
        module.discriminate(real[:3])
        objective(module, real, logits, features)


def test_feature_matching_layer_errors():
    d = MLPDiscriminator(data_shape=(2,), width=8)
    with pytest.raises(ValueError, match=r"valid names: .*body\.1"):
        FeatureMatching("l2", layer="body.99", discriminator=d)
    with pytest.raises(ValueError, match="needs the discriminator"):
        FeatureMatching("l2", layer="body.1")
    with pytest.raises(ValueError, match=r"choose one of \['l2', 'l1'\]"):
        FeatureMatching("l3")


def test_adversarial_objective_is_the_loss_of_the_fake_logits():
    logits = torch.tensor([0.5, -1.0])
    assert_close(AdversarialObjective(g_nonsaturating_loss)(None, None, logits, None), F.softplus(-logits).mean())


# -- one-sided label smoothing (Salimans et al. 2016, sec. 3.4), in losses.d_bce_loss -----------
def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_one_sided_label_smoothing_by_hand():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([1.0, -3.0])
    alpha = 0.9
    # real term: alpha * softplus(-l) + (1 - alpha) * softplus(l); fake term: softplus(l), target 0
    real_term = [alpha * sp(-l) + (1 - alpha) * sp(l) for l in (2.0, -1.0)]
    fake_term = [sp(l) for l in (1.0, -3.0)]
    expected = sum(real_term) / 2 + sum(fake_term) / 2
    assert_close(d_bce_loss(real, fake, real_target=alpha), torch.tensor(expected))
    assert abs(real_term[0] - 0.326928) < 1e-6  # 0.9 * 0.126928 + 0.1 * 2.126928


def test_label_smoothing_leaves_fake_term_alone():
    real = torch.tensor([0.3, 1.5, -0.2])
    fake = torch.tensor([1.0, -3.0, 0.5], requires_grad=True)
    grads = []
    for alpha in (1.0, 0.9, 0.7):
        (grad,) = torch.autograd.grad(d_bce_loss(real, fake, real_target=alpha), fake)
        grads.append(grad)
        # loss(alpha) minus the hand real term is the fake term, the same for every alpha
        real_term = (alpha * F.softplus(-real) + (1 - alpha) * F.softplus(real)).mean()
        assert_close(d_bce_loss(real, fake, real_target=alpha) - real_term, F.softplus(fake).mean())
    for grad in grads[1:]:
        assert_close(grad, grads[0])  # fake targets stay 0: d/dl softplus(l) / B = sigmoid(l) / B
    assert_close(grads[0], torch.sigmoid(fake.detach()) / 3)


def test_label_smoothing_moves_the_real_optimum_to_alpha():
    # the real term is minimized where sigmoid(l) = alpha, i.e. l = log(alpha / (1 - alpha))
    alpha = 0.9
    l_star = torch.tensor([math.log(alpha / (1 - alpha))], requires_grad=True)
    (grad,) = torch.autograd.grad(d_bce_loss(l_star, torch.zeros(1), real_target=alpha), l_star)
    assert_close(grad, torch.zeros(1), atol=1e-6, rtol=0)
