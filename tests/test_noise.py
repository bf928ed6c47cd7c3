"""Instance noise and its schedules: values worked out by hand, noise statistics, state round trips."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.testing import assert_close

from gan_lightning.core.noise import (
    SCHEDULES,
    Adaptive,
    Constant,
    Cosine,
    Exponential,
    InstanceNoise,
    Linear,
    Step,
    make_schedule,
)

T = 100


# --- schedules: values at steps 0, T/2, T, 2T -------------------------------------------------

@pytest.mark.parametrize(
    "schedule, expected",
    [
        (Constant(0.3), [0.3, 0.3, 0.3, 0.3]),
        (Linear(0.2, 0.0, T), [0.2, 0.1, 0.0, 0.0]),
        (Linear(0.5, 0.1, T), [0.5, 0.3, 0.1, 0.1]),
        # 0.4 * (0.1 / 0.4)^(1/2) = 0.4 * 0.5 = 0.2
        (Exponential(0.4, 0.1, T), [0.4, 0.2, 0.1, 0.1]),
        # final 0: floor 1e-3 * std, so at T/2: 1.0 * (1e-3)^(1/2); exactly 0 from T on
        (Exponential(1.0, 0.0, T), [1.0, math.sqrt(1e-3), 0.0, 0.0]),
        # (1 + cos(pi / 2)) / 2 = 1/2
        (Cosine(0.2, 0.0, T), [0.2, 0.1, 0.0, 0.0]),
        (Cosine(0.6, 0.2, T), [0.6, 0.4, 0.2, 0.2]),
        # 4 stages: T/2 is the start of stage 2 -> 1 - 2/4
        (Step(1.0, 0.0, T), [1.0, 0.5, 0.0, 0.0]),
    ],
    ids=lambda v: None if isinstance(v, list) else repr(v),
)
def test_schedule_values(schedule, expected):
    got = [schedule(step, sigma=123.0, real_acc=0.9) for step in (0, T // 2, T, 2 * T)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_exponential_hits_exactly_zero_at_T():
    s = Exponential(0.2, 0.0, T)
    assert s(T - 1, 0.2, None) == pytest.approx(0.2 * 1e-3 ** ((T - 1) / T))
    assert s(T - 1, 0.2, None) > 0
    assert s(T, 0.2, None) == 0.0
    assert s(10 * T, 0.2, None) == 0.0


def test_step_stages():
    s = Step(0.8, 0.0, T, num_drops=4)
    # stage k = floor(4 * step / 100): sigma = 0.8 - 0.8 * k / 4
    expected = {0: 0.8, 24: 0.8, 25: 0.6, 49: 0.6, 50: 0.4, 74: 0.4, 75: 0.2, 99: 0.2, 100: 0.0, 500: 0.0}
    for step, value in expected.items():
        assert s(step, 0.8, None) == pytest.approx(value, abs=1e-12), step
    assert s(T, 0.8, None) == 0.0  # exactly final, no rounding


def test_step_two_drops_towards_nonzero_final():
    s = Step(0.5, 0.1, 10, num_drops=2)
    assert [s(i, 0.0, None) for i in (0, 4, 5, 9, 10, 11)] == pytest.approx([0.5, 0.5, 0.3, 0.3, 0.1, 0.1])


@pytest.mark.parametrize("cls", [Linear, Exponential, Cosine, Step])
def test_annealed_schedules_are_monotone_and_reach_final(cls):
    s = cls(0.3, 0.05, T)
    values = [s(step, 0.0, None) for step in range(0, 2 * T)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(0.3)
    assert values[T] == pytest.approx(0.05)


def test_annealed_schedules_ignore_current_sigma_and_acc():
    s = Linear(0.2, 0.0, T)
    assert s(50, 0.0, None) == s(50, 5.0, 1.0) == pytest.approx(0.1)


# --- adaptive --------------------------------------------------------------------------------

def test_adaptive_moves_up_when_d_is_too_accurate_and_down_otherwise():
    s = Adaptive(0.1, target_acc=0.6, adjust=0.01, max_std=1.0)
    assert s(0, 0.1, real_acc=0.9) == pytest.approx(0.11)
    assert s(0, 0.1, real_acc=0.3) == pytest.approx(0.09)
    assert s(0, 0.1, real_acc=0.6) == pytest.approx(0.09)  # at target: not "above", so down
    assert s(0, 0.1, real_acc=None) == 0.1  # no feedback: unchanged


def test_adaptive_is_clamped_to_zero_and_max():
    s = Adaptive(0.0, target_acc=0.6, adjust=0.3, max_std=0.5)
    assert s(0, 0.0, real_acc=0.0) == 0.0
    assert s(0, 0.1, real_acc=0.0) == 0.0
    assert s(0, 0.4, real_acc=1.0) == 0.5
    assert s(0, 0.5, real_acc=1.0) == 0.5


def test_adaptive_default_can_move_half_in_500_steps():
    s = Adaptive(0.0)
    sigma = 0.0
    for step in range(500):
        sigma = s(step, sigma, real_acc=1.0)
    assert sigma == pytest.approx(0.5)


# --- argument checks -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Constant(-0.1), "std"),
        (lambda: Constant(float("nan")), "std"),
        (lambda: Linear(0.1, -0.1, T), "final_std"),
        (lambda: Linear(0.1, 0.0, 0), "anneal_steps"),
        (lambda: Cosine(0.1, 0.0, 10.5), "anneal_steps"),
        (lambda: Exponential(0.0, 0.0, T), "std > 0"),
        (lambda: Step(0.1, 0.0, T, num_drops=0), "num_drops"),
        (lambda: Adaptive(0.1, target_acc=1.0), "target_acc"),
        (lambda: Adaptive(0.1, target_acc=0.0), "target_acc"),
        (lambda: Adaptive(0.1, adjust=0.0), "adjust"),
        (lambda: Adaptive(0.1, max_std=0.0), "max_std"),
        (lambda: Adaptive(2.0, max_std=1.0), "max_std"),
    ],
)
def test_bad_arguments_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# --- make_schedule and the table -------------------------------------------------------------

def test_schedules_table_keys():
    assert list(SCHEDULES) == ["constant", "linear", "exponential", "cosine", "step", "adaptive"]


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_make_schedule_builds_every_entry(name):
    s = make_schedule(name, std=0.2, final_std=0.05, anneal_steps=T, target_acc=0.7)
    assert isinstance(s, SCHEDULES[name])
    assert s(0, 0.2, None) == pytest.approx(0.2)  # every schedule starts at std
    if name == "adaptive":
        assert s.target_acc == 0.7
    elif name != "constant":
        assert (s.final_std, s.anneal_steps) == (0.05, T)


def test_make_schedule_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        make_schedule("sigmoid", std=0.1, final_std=0.0, anneal_steps=T, target_acc=0.6)
    message = str(info.value)
    assert "sigmoid" in message
    for name in SCHEDULES:
        assert name in message


# --- InstanceNoise ---------------------------------------------------------------------------

@pytest.mark.parametrize("noise", [InstanceNoise(), InstanceNoise.off(), InstanceNoise(Constant(0.0))])
def test_zero_sigma_returns_the_input_object(noise):
    x = torch.randn(4, 3, 8, 8)
    state = torch.random.get_rng_state()
    assert noise(x) is x
    assert torch.equal(torch.random.get_rng_state(), state)  # no randn drawn
    assert noise.update(10) == 0.0


@pytest.mark.parametrize("training", [True, False])
def test_noise_has_std_sigma_on_real_and_fake_alike(training):
    torch.manual_seed(0)
    noise = InstanceNoise(Constant(0.25)).train(training)
    real = torch.rand(64, 1, 32, 32) * 2 - 1  # (B, C, H, W), data-like in [-1, 1]
    fake = torch.full((64, 1, 32, 32), 0.7)  # a collapsed generator: quite different inputs
    real_eps = noise(real) - real
    fake_eps = noise(fake) - fake
    assert not torch.equal(noise(real), real)
    for eps in (real_eps, fake_eps):
        assert eps.mean().item() == pytest.approx(0.0, abs=0.01)
        assert eps.std().item() == pytest.approx(0.25, rel=0.02)
    # same distribution for both, but fresh draws
    assert real_eps.std().item() == pytest.approx(fake_eps.std().item(), rel=0.03)
    assert not torch.allclose(real_eps, fake_eps)


def test_gradient_flows_through_the_noise():
    noise = InstanceNoise(Constant(0.5))
    x = torch.randn(8, 2, requires_grad=True)
    noise(x).sum().backward()
    assert_close(x.grad, torch.ones_like(x))


def test_update_follows_a_linear_schedule():
    noise = InstanceNoise(Linear(0.2, 0.0, 4))
    assert (noise.step, noise.sigma) == (0, pytest.approx(0.2))
    sigmas = [noise.update(step) for step in range(1, 7)]
    assert sigmas == pytest.approx([0.15, 0.1, 0.05, 0.0, 0.0, 0.0])
    assert noise.step == 6 and noise.sigma == 0.0
    assert isinstance(noise.sigma, float)
    x = torch.randn(3)
    assert noise(x) is x  # annealed to 0: a no-op again


def test_update_with_adaptive_reads_real_accuracy_from_logits():
    noise = InstanceNoise(Adaptive(0.1, target_acc=0.6, adjust=0.01))
    confident = torch.tensor([2.0, 1.0, 3.0, -1.0])  # 3/4 > 0.6 classified real: more noise
    unsure = torch.tensor([2.0, -1.0, -3.0, -1.0])  # 1/4: less noise
    assert noise.update(1, confident) == pytest.approx(0.11)
    assert noise.update(2, confident) == pytest.approx(0.12)
    assert noise.update(3, unsure) == pytest.approx(0.11)
    assert noise.update(4, None) == pytest.approx(0.11)  # no logits: unchanged
    assert noise.step == 4


def _trained_noise() -> InstanceNoise:
    noise = InstanceNoise(Adaptive(0.1, adjust=0.01))
    for step in range(1, 8):
        noise.update(step, torch.ones(16))  # all classified real: sigma climbs
    return noise


def test_state_dict_round_trip_restores_progress():
    noise = _trained_noise()
    assert (noise.step, noise.sigma) == (7, pytest.approx(0.17))
    fresh = InstanceNoise(Adaptive(0.1, adjust=0.01))
    fresh.load_state_dict(noise.state_dict())
    assert (fresh.step, fresh.sigma) == (noise.step, noise.sigma)


def test_state_survives_torch_save_with_weights_only():
    noise = _trained_noise()
    model = torch.nn.Sequential(noise, torch.nn.Linear(2, 1))  # nested, as GAN.d_input is
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = torch.nn.Sequential(InstanceNoise(Adaptive(0.1, adjust=0.01)), torch.nn.Linear(2, 1))
    fresh.load_state_dict(state)
    assert (fresh[0].step, fresh[0].sigma) == (7, noise.sigma)


def test_extra_repr_shows_the_schedule():
    text = repr(InstanceNoise(Linear(0.2, 0.0, 100)))
    assert "Linear(std=0.2, final_std=0.0, anneal_steps=100)" in text
    assert "sigma=0.2" in text
