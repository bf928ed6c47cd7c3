"""--d_spectral_norm (Miyato et al. 2018): what is wrapped per architecture, sigma_max ~ 1 after power
iterations, checkpoints and exact resume, the probe's D, the sn/* diagnostic, and refused combinations."""

from __future__ import annotations

import copy
import csv
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from gan_lightning.build import build_diagnostics, build_module, build_networks, probe_discriminator, probe_norm
from gan_lightning.callbacks import SpectralNorms
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.diagnostics.spectral import largest_singular_values
from gan_lightning.errors import UsageError
from gan_lightning.layers import (apply_spectral_norm, init_weight_norm_from_data, is_spectrally_normalized,
                                  is_weight_normalized, weight_layers)
from gan_lightning.networks import NETWORKS
from gan_lightning.trainer.checkpoints import load_weights
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main
from script_harness import assert_one_line
from test_reliability import assert_same_training, state

SHAPES = {"mlp": (2,), "dcgan": (3, 32, 32), "improved_mnist": (1, 28, 28)}
SN_ARCHS = [name for name, arch in NETWORKS.items() if arch.d_spectral_norm]
DIGITS = ["--dataset", "digits", "--image_size", "16", "--arch", "mlp", "--batch_size", "64", "--g_width", "16",
          "--d_width", "16", "--z_dim", "8", "--log_every_n_steps", "5", "--metric_every_n_epochs", "0",
          "--d_spectral_norm"]
RING = ["--dataset", "ring", "--batch_size", "64", "--g_width", "16", "--d_width", "16", "--z_dim", "2",
        "--log_every_n_steps", "5", "--max_steps", "20", "--metric_every_n_epochs", "0", "--d_spectral_norm"]


def discriminator(name: str, norm: str = "none") -> nn.Module:
    arch = NETWORKS[name]
    return arch.discriminator(data_shape=SHAPES[name], width=8, norm=norm if norm in arch.d_norms else "none")


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- the layer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SN_ARCHS)
def test_every_weight_layer_is_wrapped_and_ends_near_unit_sigma(name):
    d = discriminator(name)
    raw = largest_singular_values(d)
    expected = [n for n, _ in weight_layers(d)]
    assert apply_spectral_norm(d) == len(expected) >= 2  # the body's layers and the head
    assert [n for n, m in d.named_modules() if is_spectrally_normalized(m)] == expected
    assert "head" in expected and max(abs(s - 1) for s in map(float, raw.values())) > 0.2  # raw W is not ~1 already
    x = torch.randn(16, *SHAPES[name])
    d.train()
    for _ in range(10):  # one power iteration per forward pass
        d(x)
    sigmas = largest_singular_values(d)
    assert list(sigmas) == expected
    for layer, sigma in sigmas.items():  # exact sigma_max (SVD) of W / sigma_estimate
        torch.testing.assert_close(sigma, torch.tensor(1.0), rtol=0, atol=0.02, msg=layer)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_registry_says_which_discriminators_take_spectral_norm(name):
    d = discriminator(name)
    if NETWORKS[name].d_spectral_norm:
        assert apply_spectral_norm(d) > 0
    else:  # improved_mnist: weight-normalized layers
        with pytest.raises(ValueError, match="already parametrized"):
            apply_spectral_norm(d)


def test_minibatch_discrimination_head_linear_is_wrapped_not_its_tensor():
    cfg = resolve(TrainConfig(dataset="ring", d_spectral_norm=True, minibatch_discrimination=True, mbd_kernels=4,
                              mbd_dim=3))
    _, d = build_networks(cfg, (2,))
    assert is_spectrally_normalized(d.head[1]) and not hasattr(d.head[0], "parametrizations")
    assert "head.1" in largest_singular_values(d)


def test_refuses_norm_layers_and_networks_without_weight_layers():
    with pytest.raises(ValueError, match="BatchNorm2d.*cancels spectral norm"):
        apply_spectral_norm(discriminator("dcgan", norm="batch"))
    with pytest.raises(ValueError, match="LayerNorm"):
        apply_spectral_norm(discriminator("mlp", norm="layer"))
    with pytest.raises(ValueError, match="no Linear or convolution"):
        apply_spectral_norm(nn.Sequential(nn.Flatten(), nn.ReLU()))


def test_weight_norm_helpers_leave_spectrally_normalized_layers_alone():
    """The semi-supervised module's data-dependent init of weight norm must not take SN layers for WN ones."""
    d = discriminator("mlp")
    apply_spectral_norm(d)
    assert not any(is_weight_normalized(m) for m in d.modules())
    assert init_weight_norm_from_data(d, torch.randn(8, 2)) == 0


def test_reading_sigma_runs_no_power_iteration():
    d = discriminator("dcgan")
    apply_spectral_norm(d)
    d.train()
    before = copy.deepcopy(d.state_dict())
    largest_singular_values(d)
    for key, value in d.state_dict().items():
        assert torch.equal(value, before[key]), key  # u and v unchanged
    assert all(m.training for m in d.modules())  # the parametrizations are back in training mode


def test_sigma_of_a_plain_layer_is_its_weights():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
    assert float(largest_singular_values(nn.Sequential(layer))["0"]) == pytest.approx(3.0)


# -- build, checkpoints, probe -------------------------------------------------------------------
def test_weights_load_back_with_the_flag_and_not_without():
    cfg = resolve(TrainConfig(dataset="ring", d_spectral_norm=True, max_steps=5))
    saved = build_module(cfg, (2,))
    saved.discriminator.train()(torch.randn(8, 2))  # move u, v away from their start
    sd = saved.state_dict()
    assert any(k.endswith("parametrizations.weight.0._u") for k in sd)
    torch.manual_seed(1)
    loaded = build_module(cfg, (2,))
    load_weights(loaded, sd, "run.ckpt")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, sd[key]) if isinstance(value, torch.Tensor) else value == sd[key], key
    x = torch.randn(8, 2)
    torch.testing.assert_close(loaded.discriminator.eval()(x), saved.discriminator.eval()(x), rtol=0, atol=0)
    with pytest.raises(UsageError, match="weights do not fit"):
        load_weights(build_module(dataclasses.replace(cfg, d_spectral_norm=False), (2,)), sd, "run.ckpt")


def test_dcgan_auto_norm_is_none_and_the_probe_d_has_spectral_norm():
    cfg = resolve(TrainConfig(dataset="digits", image_size=28, d_spectral_norm=True))
    _, d = build_networks(cfg, (1, 28, 28))
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in d.modules())
    assert probe_norm(cfg) == "none"
    probe_d = probe_discriminator(cfg, (1, 28, 28))
    assert [n for n, m in probe_d.named_modules() if is_spectrally_normalized(m)] == [n for n, _ in weight_layers(d)]
    with pytest.raises(UsageError, match="--probe_norm batch"):
        probe_norm(cfg, "batch")
    assert any(isinstance(cb, SpectralNorms) for cb in build_diagnostics(cfg))
    plain = dataclasses.replace(cfg, d_spectral_norm=False)
    assert not any(isinstance(cb, SpectralNorms) for cb in build_diagnostics(plain))


def test_callback_checks_its_argument():
    with pytest.raises(ValueError, match="every_n_steps"):
        SpectralNorms(every_n_steps=0)


# -- runs ----------------------------------------------------------------------------------------
def test_ring_run_logs_sn_near_one(tmp_path):
    assert run_cli(main, [*RING, "--out_dir", str(tmp_path), "--run_name", "ring"]) == 0
    logged = [r for r in rows(tmp_path / "ring") if r.get("sn/head")]
    assert len(logged) == 4  # steps 5, 10, 15, 20
    keys = sorted(k for k in logged[0] if k.startswith("sn/"))
    assert keys == ["sn/body.1", "sn/body.4", "sn/body.7", "sn/head"]  # the MLP's Linear layers
    assert all(abs(float(r[k]) - 1) < 0.1 for r in logged for k in keys)


def test_digits_run_resumes_exactly(tmp_path):
    out = ["--out_dir", str(tmp_path)]
    assert run_cli(main, [*DIGITS, *out, "--run_name", "straight", "--max_epochs", "2"]) == 0
    assert run_cli(main, [*DIGITS, *out, "--run_name", "split", "--max_epochs", "1"]) == 0
    assert run_cli(main, [*out, "--run_name", "split", "--resume", "last", "--max_epochs", "2"]) == 0
    a, b = state(tmp_path / "straight"), state(tmp_path / "split")
    assert int(a["state_dict"]["g_steps"]) == int(b["state_dict"]["g_steps"]) > 20  # two epochs
    assert any(k.endswith("._v") for k in a["state_dict"])
    assert_same_training(a, b)
    assert any(r.get("sn/head") for r in rows(tmp_path / "split"))


def test_resume_without_the_flag_is_refused(tmp_path, capsys):
    out = ["--out_dir", str(tmp_path)]
    assert run_cli(main, [*RING, *out, "--run_name", "ring", "--max_steps", "2"]) == 0
    capsys.readouterr()
    before = sorted(p for p in tmp_path.rglob("*"))
    code = run_cli(main, [*out, "--run_name", "ring", "--resume", "last", "--d_spectral_norm", "false",
                          "--max_steps", "4"])
    assert_one_line(code, capsys.readouterr().err, "--d_spectral_norm=False differs from the checkpoint's")
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("argv, says", [
    (["--dataset", "digits", "--image_size", "28", "--arch", "improved_mnist"], "weight-normalized already"),
    (["--dataset", "digits", "--image_size", "28", "--d_norm", "batch"], "--d_norm batch: that norm layer"),
    (["--dataset", "ring", "--d_norm", "layer"], "--d_norm layer: that norm layer"),
], ids=["improved_mnist", "dcgan-batch", "mlp-layer"])
def test_bad_combinations_are_one_line_exit_2_nothing_written(tmp_path, capsys, argv, says):
    code = run_cli(main, [*argv, "--d_spectral_norm", "--out_dir", str(tmp_path / "runs")])
    assert_one_line(code, capsys.readouterr().err, says)
    assert list(tmp_path.iterdir()) == []
