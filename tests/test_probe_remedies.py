"""The probe compares remedies: penalties on the probe's D, the arms built from the flags and the
--remedy presets, and the script's per-remedy outputs (curves.csv, summary.json, fig_remedies.png)."""

import csv
import json

import pytest
import torch

from gan_lightning.build import build_gradient_regularizers
from gan_lightning.config import REMEDIES, TrainConfig, parse_args
from gan_lightning.core.noise import Exponential
from gan_lightning.core.penalties import GradientPenalty, RothRegularizer, ZeroCenteredGradientPenalty
from gan_lightning.diagnostics.probe import probe
from gan_lightning.experiments.probe_study import arm_configs, base_label
from gan_lightning.networks import MLPDiscriminator, MLPGenerator
from gan_lightning.runs.cli import run_cli
from script_harness import script_main

pytestmark = pytest.mark.usefixtures("one_thread")


def _probe(penalties=(), **kwargs):
    torch.manual_seed(0)
    g = MLPGenerator(2, (2,), width=8)
    real = torch.randn(256, 2) * 0.1 + 2.0
    return probe(g, real, lambda: MLPDiscriminator((2,), width=8), penalties=penalties, d_iters=12,
                 batch_size=32, grad_every=4, grad_batches=1, seed=0, **kwargs)


def test_a_penalty_that_never_acts_leaves_the_probe_bit_identical():
    plain = _probe()
    idle = _probe([ZeroCenteredGradientPenalty(10.0, "real", every=1000)])  # first acts at call 1,000
    assert idle == plain


@pytest.mark.parametrize("penalty", [
    lambda: ZeroCenteredGradientPenalty(10.0, "real"),
    lambda: GradientPenalty(10.0),
    # annealed to 1% after one G step: the probe has no G steps, so it acts with gamma_0 = 2
    lambda: RothRegularizer(Exponential(2.0, final_std=0.02, anneal_steps=1)),
])
def test_a_penalty_changes_how_d_trains_and_d_loss_stays_the_bce_loss(penalty):
    plain, regularized = _probe(), _probe([penalty()])
    assert regularized[0]["d_loss"] == plain[0]["d_loss"]  # same D before its first update: BCE alone
    assert regularized[-1]["d_loss"] != plain[-1]["d_loss"]
    assert regularized[-1]["grad_norm_minimax"] != plain[-1]["grad_norm_minimax"]


def test_arms_start_from_the_flags_with_every_other_remedy_off():
    cfg, given = parse_args(["--dataset", "mnist5k", "--image_size", "28", "--r1_weight", "3", "--gp_weight", "5"])
    arms = arm_configs(cfg, given, ["r1", "roth", "sn", "noise", "wgan_gp"], [0.0, 1.0])
    names = [name for name, _, _ in arms]
    assert names == ["flags", "r1", "roth", "sn", "noise", "wgan_gp"]
    by_name = {name: (arm, stds) for name, arm, stds in arms}
    first, stds = by_name["flags"]
    assert (first.r1_weight, first.gp_weight, stds) == (3.0, 5.0, [0.0, 1.0])
    r1, _ = by_name["r1"]
    assert (r1.r1_weight, r1.gp_weight, r1.remedy) == (3.0, 0.0, "r1")  # the weight given wins, GP is off
    roth, stds = by_name["roth"]
    assert (roth.roth_gamma, roth.r1_weight, roth.roth_final_gamma, stds) == (2.0, 0.0, 0.02, [0.0])
    sn, _ = by_name["sn"]
    assert sn.d_spectral_norm and sn.d_norm == "none" and sn.r1_weight == 0
    noise, stds = by_name["noise"]
    assert stds == [REMEDIES["noise"]["noise_std"]] and noise.r1_weight == 0
    wgan_gp, _ = by_name["wgan_gp"]
    assert (wgan_gp.gp_weight, wgan_gp.r1_weight) == (5.0, 0.0)  # --gp_weight given: 5, not the preset's 10
    assert [type(p).__name__ for p in build_gradient_regularizers(roth)] == ["RothRegularizer"]
    assert [type(p).__name__ for p in build_gradient_regularizers(first)] == [
        "GradientPenalty", "ZeroCenteredGradientPenalty"]


def test_the_first_arm_is_named_after_the_remedy_or_the_flags():
    assert base_label(TrainConfig()) == "none"
    assert base_label(parse_args(["--remedy", "sn"])[0]) == "sn"
    assert base_label(TrainConfig(roth_gamma=1.0)) == "flags"


def test_script_probes_each_remedy_and_overlays_them(tmp_path, capsys):
    out = tmp_path / "probe"
    args = ["--quick", "--g_epochs", "1", "--noise_std", "0,1", "--g_width", "8", "--d_width", "8", "--d_iters", "12",
            "--grad_every", "4", "--grad_batches", "1", "--logger", "none", "--remedies", "r1,sn,noise",
            "--overlay_epochs", "1", "--out_dir", str(out)]
    assert run_cli(script_main("probe_discriminator"), args) == 0, capsys.readouterr().err
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["remedy"] for r in rows[::12]] == ["none", "none", "r1", "sn", "noise"]
    assert {r["noise_std"] for r in rows if r["remedy"] == "noise"} == {"0.2"}
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["remedies"]) == ["none", "r1", "sn", "noise"]
    entry = summary["remedies"]["sn"][0]
    assert entry["g_epochs"] == 1 and 0 <= entry["final_d_accuracy"] <= 1
    assert set(entry) >= {"final_d_accuracy", "grad_norm_minimax_decay_orders"}
    arms = {a["remedy"]: a for a in summary["settings"]["arms"]}
    assert arms["sn"]["d_spectral_norm"] and arms["sn"]["probe_norm"] == "none"
    assert arms["r1"]["r1_weight"] == 10.0 and arms["none"]["probe_norm"] == "layer"
    assert [t["g_epochs"] for t in summary["targets"]] == [1]  # targets: the first arm only
    assert (out / "fig_remedies.png").stat().st_size > 10_000
    assert "| sn | 1 | 0 |" in (out / "results.md").read_text()
