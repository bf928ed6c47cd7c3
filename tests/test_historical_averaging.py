"""Historical averaging (Salimans et al. 2016, sec. 3.3) against hand-computed running averages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from gan_lightning.core.losses import d_bce_loss, g_nonsaturating_loss
from gan_lightning.modules import GAN
from gan_lightning.networks import MLPDiscriminator, MLPGenerator
from gan_lightning.core.penalties import HistoricalAveraging

REAL, FAKE = torch.randn(4, 2), torch.randn(4, 2) + 3  # unused by the penalty, passed for the signature


def linear(weight: list[float], bias: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(bias)
    return layer


def set_params(layer: nn.Linear, weight: list[float], bias: float) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.fill_(bias)


def test_value_by_hand_over_three_updates():
    d = linear([1.0, 2.0], 3.0)  # theta_1 = (1, 2, 3)
    module = SimpleNamespace(discriminator=d, generator=None)
    penalty = HistoricalAveraging(0.5, d, player="d")
    assert_close(penalty(module, REAL, FAKE), torch.tensor(0.0))  # the average of theta_1 alone is theta_1
    set_params(d, [3.0, 2.0], -1.0)  # theta_2 = (3, 2, -1); average (2, 2, 1)
    value = penalty(module, REAL, FAKE)
    assert_close(value, torch.tensor(0.5 * (1 + 0 + 4)))  # ||theta_2 - avg||^2 = ||(1, 0, -2)||^2 = 5
    value.backward()  # gradient 2 w (theta - avg), the average held fixed
    assert_close(d.weight.grad, torch.tensor([[1.0, 0.0]]))
    assert_close(d.bias.grad, torch.tensor([-2.0]))
    # theta_3 = theta_2: average (theta_1 + 2 theta_2) / 3 = (7/3, 2, 1/3); diff (2/3, 0, -4/3)
    assert_close(penalty(module, REAL, FAKE), torch.tensor(0.5 * (4 / 9 + 16 / 9)))
    assert int(penalty.count) == 3
    assert_close(penalty.average, torch.tensor([7 / 3, 2.0, 1 / 3]))


def test_zero_at_the_running_average():
    d = linear([1.0, 2.0], 3.0)
    module = SimpleNamespace(discriminator=d, generator=None)
    penalty = HistoricalAveraging(2.0, d)
    penalty(module, REAL, FAKE)
    set_params(d, [-1.0, 0.0], 5.0)
    assert penalty(module, REAL, FAKE) > 0
    set_params(d, [0.0, 1.0], 4.0)  # the running average of the two
    assert_close(penalty(module, REAL, FAKE), torch.tensor(0.0))  # adding the average keeps it in place


def test_generator_player_reads_the_generator():
    g, d = linear([1.0, 1.0], 0.0), linear([9.0, 9.0], 9.0)
    module = SimpleNamespace(discriminator=d, generator=g)
    penalty = HistoricalAveraging(1.0, g, player="g")
    penalty(module, REAL, FAKE)
    set_params(g, [3.0, 1.0], 0.0)  # average (2, 1, 0): diff (1, 0, 0)
    assert_close(penalty(module, REAL, FAKE), torch.tensor(1.0))


def make_gan(weight: float = 0.1) -> GAN:
    g = MLPGenerator(z_dim=3, data_shape=(2,), width=8)
    d = MLPDiscriminator(data_shape=(2,), width=8)
    return GAN(
        g, d, d_bce_loss, g_nonsaturating_loss,
        d_penalties=[HistoricalAveraging(weight, d, "d")], g_penalties=[HistoricalAveraging(weight, g, "g")],
    )


def test_state_dict_round_trip_through_the_module():
    module = make_gan()
    for _ in range(3):
        pairs = ((module.discriminator, module.d_penalties[0]), (module.generator, module.g_penalties[0]))
        for net, penalty in pairs:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.1 * torch.randn_like(p))
            penalty(module, REAL, FAKE)
    state = module.state_dict()  # what a Lightning checkpoint stores
    assert {"d_penalties.0.average", "d_penalties.0.count", "g_penalties.0.average", "g_penalties.0.count"} <= set(state)

    resumed = make_gan()  # a fresh build, as when a run resumes, then the checkpoint is loaded
    resumed.load_state_dict(state)
    for name in ("d_penalties", "g_penalties"):
        old, new = getattr(module, name)[0], getattr(resumed, name)[0]
        assert int(new.count) == 3
        assert_close(new.average, old.average)
    with torch.no_grad():
        for net in (module.discriminator, resumed.discriminator):
            for p in net.parameters():
                p.add_(1.0)
    assert_close(resumed.d_penalties[0](resumed, REAL, FAKE), module.d_penalties[0](module, REAL, FAKE))


def test_argument_and_shape_checks():
    d = linear([1.0, 2.0], 3.0)
    with pytest.raises(ValueError, match="> 0"):
        HistoricalAveraging(0.0, d)
    with pytest.raises(ValueError, match="'d' or 'g'"):
        HistoricalAveraging(1.0, d, player="both")
    penalty = HistoricalAveraging(1.0, d)
    with pytest.raises(ValueError, match="built for 3 parameters"):
        penalty(SimpleNamespace(discriminator=nn.Linear(3, 1)), REAL, FAKE)
