"""D's gradient regularizers after Arjovsky & Bottou 2017: R1/R2 (Mescheder et al. 2018) with lazy
regularization (StyleGAN2), and Roth et al. 2017's annealed regularizer, against values worked out by hand."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from test_reliability import assert_same_training, state
from torch.testing import assert_close

from gan_lightning.build import build_module
from gan_lightning.config import resolve
from gan_lightning.config.parse import parse_args
from gan_lightning.core.noise import Constant, Exponential, Linear
from gan_lightning.core.penalties import RothRegularizer, ZeroCenteredGradientPenalty
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4


class LinearD(nn.Module):
    """f(x) = w . x + b: grad_x f = w for every x. Counts its calls; ``g_step_count`` as GAN has it."""

    def __init__(self, w: list[float], b: float = 0.0) -> None:
        super().__init__()
        self.w, self.b = nn.Parameter(torch.tensor(w)), nn.Parameter(torch.tensor(b))
        self.calls, self.g_step_count = 0, 0

    def discriminate(self, x):
        self.calls += 1
        return x.flatten(1) @ self.w + self.b, x.flatten(1)


class QuadraticD(LinearD):
    """f(x) = c/2 ||x||^2: grad_x f = c x, so ||grad||^2 = c^2 ||x||^2 differs between real and fake."""

    def discriminate(self, x):
        self.calls += 1
        return 0.5 * self.w[0] * x.flatten(1).pow(2).sum(1), x.flatten(1)


# -- R1 and R2 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("w, gamma", [([3.0, 4.0], 10.0), ([0.6, 0.8], 1.0), ([0.0, -2.0], 0.5)])
def test_r1_of_a_linear_d_is_half_gamma_times_the_squared_weight_norm(w, gamma):
    d = LinearD(w)
    real, fake = torch.randn(6, 2), torch.randn(6, 2) + 3
    value = ZeroCenteredGradientPenalty(gamma, "real")(d, real, fake)
    assert_close(value, torch.tensor(gamma / 2 * sum(v * v for v in w)))
    assert d.calls == 1


def test_r1_reads_real_and_r2_generated_samples():
    d = QuadraticD([2.0])  # ||grad||^2 = 4 ||x||^2
    real = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # ||x||^2: 1, 4 -> mean 2.5
    fake = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # 25, 1 -> mean 13
    assert_close(ZeroCenteredGradientPenalty(10.0, "real")(d, real, fake), torch.tensor(5 * 4 * 2.5))
    assert_close(ZeroCenteredGradientPenalty(10.0, "fake")(d, real, fake), torch.tensor(5 * 4 * 13.0))


def test_r1_trains_d_through_its_input_gradient_and_leaves_g_alone():
    d = LinearD([3.0, 4.0])
    fake = torch.randn(4, 2, requires_grad=True)  # as G(z) with its graph
    ZeroCenteredGradientPenalty(2.0, "fake")(d, torch.randn(4, 2), fake).backward()
    assert_close(d.w.grad, torch.tensor([3.0, 4.0]) * 2.0)  # d/dw gamma/2 ||w||^2 = gamma w
    assert fake.grad is None  # R2 is on the detached samples


def test_lazy_regularization_applies_at_every_nth_step_with_weight_times_n():
    d = LinearD([3.0, 4.0])
    r1 = ZeroCenteredGradientPenalty(10.0, "real", every=3)
    values = [float(r1(d, torch.randn(4, 2), torch.randn(4, 2)).detach()) for _ in range(9)]
    assert values == [0.0, 0.0, 375.0, 0.0, 0.0, 375.0, 0.0, 0.0, 375.0]  # 10 * 3 / 2 * 25 at calls 3, 6, 9
    assert d.calls == 3  # D is not called on the steps in between
    assert r1.call_count == int(r1.calls) == 9


def test_lazy_state_survives_a_checkpoint_round_trip():
    d = LinearD([3.0, 4.0])
    r1 = ZeroCenteredGradientPenalty(1.0, "real", every=4)
    for _ in range(5):
        r1(d, torch.randn(2, 2), torch.randn(2, 2))
    buffer = io.BytesIO()
    torch.save(r1.state_dict(), buffer)
    buffer.seek(0)
    resumed = ZeroCenteredGradientPenalty(1.0, "real", every=4)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.call_count == 5
    values = [float(resumed(d, torch.randn(2, 2), torch.randn(2, 2)).detach()) for _ in range(4)]
    assert values == [0.0, 0.0, 4 * 0.5 * 25, 0.0]  # calls 6, 7, 8, 9: the 8th is the next lazy step


@pytest.mark.parametrize("kwargs", [dict(weight=0.0), dict(weight=-1.0), dict(weight=float("nan")),
                                    dict(weight=1.0, samples="both"), dict(weight=1.0, every=0)])
def test_r1_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ZeroCenteredGradientPenalty(**kwargs)


# -- Roth et al. 2017 ---------------------------------------------------------------------------
def roth_case() -> tuple[LinearD, torch.Tensor, torch.Tensor]:
    """w = (3, 4): ||grad f||^2 = 25; real logits (0, ln 3), fake logits (ln 3, -ln 3)."""
    d = LinearD([3.0, 4.0])
    real = torch.tensor([[0.0, 0.0], [LN3 / 3, 0.0]])
    fake = torch.tensor([[LN3 / 3, 0.0], [-LN3 / 3, 0.0]])
    return d, real, fake


def test_roth_regularizer_against_sigmoid_weights_by_hand():
    d, real, fake = roth_case()
    # real: (1 - D)^2 = (1/2)^2, (1/4)^2 -> mean 5/32; fake: D^2 = (3/4)^2, (1/4)^2 -> mean 5/16
    omega = 25 * (5 / 32 + 10 / 32)
    value = RothRegularizer(Constant(2.0))(d, real, fake)
    assert_close(value, torch.tensor(2.0 / 2 * omega))
    assert d.calls == 2  # real and generated samples, each through the module's D call site


def test_roth_gradient_flows_through_the_sigmoid_weights():
    d, real, fake = roth_case()
    RothRegularizer(Constant(2.0))(d, real, fake).backward()
    # d/db: real -2 (1 - D)^2 D -> -1/4, -3/32 (mean -11/64); fake 2 D^2 (1 - D) -> 9/32, 3/32 (mean 12/64)
    assert_close(d.b.grad, torch.tensor(2.0 / 2 * 25 * (12 - 11) / 64))


@pytest.mark.parametrize("g_steps, gamma", [(0, 2.0), (50, 0.2), (100, 0.02), (400, 0.02)])
def test_roth_gamma_is_annealed_by_the_modules_g_steps(g_steps, gamma):
    d, real, fake = roth_case()
    roth = RothRegularizer.annealed("exponential", 2.0, 0.02, 100)  # the paper's 2 * 0.01^(t/T)
    d.g_step_count = g_steps
    assert roth.gamma(g_steps) == pytest.approx(gamma, rel=1e-12)
    assert_close(roth(d, real, fake), torch.tensor(gamma / 2 * 25 * 15 / 32))


def test_roth_at_gamma_zero_calls_no_d():
    d, real, fake = roth_case()
    d.g_step_count = 10
    assert float(RothRegularizer(Linear(1.0, final_std=0.0, anneal_steps=10))(d, real, fake)) == 0.0
    assert d.calls == 0


def test_roth_rejects_a_schedule_that_reads_d_accuracy():
    with pytest.raises(ValueError, match="constant, linear, exponential"):
        RothRegularizer.annealed("adaptive", 2.0, 0.02, 100)


# -- config, build and training runs ------------------------------------------------------------
RING = ["--dataset", "ring", "--z_dim", "2", "--g_width", "16", "--d_width", "16", "--batch_size", "256",
        "--logger", "csv", "--metric_every_n_epochs", "0", "--log_every_n_steps", "5", "--max_epochs", "-1"]


def test_build_plugs_each_regularizer_into_d_penalties():
    def penalties(*argv):
        cfg = resolve(parse_args(["--dataset", "ring", *argv])[0])
        return list(build_module(cfg, (2,)).d_penalties)

    assert penalties() == []
    r1, r2, roth = penalties("--r1_weight", "10", "--r2_weight", "1", "--reg_every", "16", "--roth_gamma", "2")
    assert (r1.samples, r1.weight, r1.every, r2.samples, r2.weight) == ("real", 10.0, 16, "fake", 1.0)
    # final gamma -1 resolved to 0.01 * gamma; anneal steps -1 to the whole run: 20 epochs x 156 batches of ring
    assert roth.schedule == Exponential(2.0, final_std=0.02, anneal_steps=20 * (10_000 // 64))
    (linear,) = penalties("--roth_gamma", "1", "--roth_schedule", "linear", "--roth_final_gamma", "0",
                          "--roth_anneal_steps", "10000")
    assert linear.schedule == Linear(1.0, final_std=0.0, anneal_steps=10_000)  # a length given wins


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("flags", [
    ["--r1_weight", "10"],
    ["--r2_weight", "1", "--reg_every", "4"],
    ["--r1_weight", "10", "--reg_every", "16", "--loss", "hinge"],
    ["--roth_gamma", "2", "--roth_anneal_steps", "20"],
    ["--roth_gamma", "2", "--roth_schedule", "cosine", "--roth_final_gamma", "0", "--roth_anneal_steps", "20",
     "--loss", "minimax"],
], ids=lambda f: " ".join(f))
def test_short_training_run_with_each_regularizer_is_finite(tmp_path, flags):
    assert run_cli(main, [*RING, *flags, "--max_steps", "30", "--out_dir", str(tmp_path), "--run_name", "r"]) == 0
    state = checkpoint(tmp_path / "r")
    assert int(state["g_steps"]) == 30
    for key, value in state.items():
        if key.startswith(("generator.", "discriminator.")) and value.is_floating_point():
            assert torch.isfinite(value).all(), key
    if "--roth_gamma" not in flags:
        assert int(state["d_penalties.0.calls"]) == int(state["d_steps"]) == 30


def test_exact_resume_regularizes_at_the_same_steps(tmp_path):
    """Stopped at G step 20 (D step 40, not a multiple of --reg_every 3) and resumed: one run of 40 G steps."""
    flags = [*RING, "--r1_weight", "5", "--r2_weight", "1", "--reg_every", "3", "--n_critic", "2",
             "--roth_gamma", "2", "--roth_anneal_steps", "30", "--out_dir", str(tmp_path)]
    assert run_cli(main, [*flags, "--run_name", "straight", "--max_steps", "40"]) == 0
    assert run_cli(main, [*flags, "--run_name", "split", "--max_steps", "20"]) == 0
    assert int(checkpoint(tmp_path / "split")["d_penalties.0.calls"]) == 40
    assert run_cli(main, ["--out_dir", str(tmp_path), "--run_name", "split", "--resume", "last",
                          "--max_steps", "40"]) == 0
    a, b = state(tmp_path / "straight"), state(tmp_path / "split")
    assert int(b["state_dict"]["g_steps"]) == 40
    assert int(b["state_dict"]["d_penalties.0.calls"]) == int(b["state_dict"]["d_penalties.1.calls"]) == 80
    assert_same_training(a, b)


BAD_INPUTS = [
    (["--r1_weight", "-1"], "--r1_weight: must be a finite number >= 0"),
    (["--r2_weight", "-0.5"], "--r2_weight: must be a finite number >= 0"),
    (["--r1_weight", "nan"], "--r1_weight: must be a finite number"),
    (["--roth_gamma", "-2"], "--roth_gamma: must be a finite number >= 0"),
    (["--reg_every", "0"], "--reg_every: must be >= 1"),
    (["--roth_schedule", "adaptive"], "valid values are: constant, linear, exponential, cosine, step"),
    (["--roth_schedule", "sqrt", "--roth_gamma", "2"], "valid values are: constant"),
    (["--roth_gamma", "2", "--loss", "hinge"], "--roth_gamma needs a BCE loss"),
    (["--roth_gamma", "2", "--loss", "wasserstein_gp"], "not --loss wasserstein"),
    (["--roth_gamma", "2", "--roth_final_gamma", "-0.5"], "--roth_final_gamma: must be"),
    (["--roth_gamma", "2", "--roth_anneal_steps", "0"], "--roth_anneal_steps: must be >= 1"),
    (["--task", "semi_supervised", "--r1_weight", "10"], "--r1_weight is not part of --task semi_supervised"),
    (["--task", "semi_supervised", "--reg_every", "16"], "--reg_every is not part of --task semi_supervised"),
    (["--task", "semi_supervised", "--roth_gamma", "2"], "--roth_gamma is not part of --task semi_supervised"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_regularizer_flags_exit_2_with_one_line_and_write_nothing(tmp_path, argv, fragment, capsys):
    assert run_cli(main, [*argv, "--out_dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, err
    assert not (tmp_path / "runs").exists()
