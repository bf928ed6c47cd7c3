"""--g_ema: the EMA of G's weights (modules/ema.py), what samples and metrics use, its keys, exact resume."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gan_lightning.build import build_module
from gan_lightning.callbacks import MetricsCallback, SampleGrid
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.core import losses
from gan_lightning.data.datasets import DATASETS, data_shape, ring_modes
from gan_lightning.metrics.keys import best_of, metric_key, run_metric_keys
from gan_lightning.modules.ema import WeightEMA
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main
from test_reliability import assert_same_training, state

ROOT = Path(__file__).resolve().parents[1]
RING = ["--dataset", "ring", "--batch_size", "64", "--g_width", "16", "--d_width", "16", "--z_dim", "8",
        "--log_every_n_steps", "5", "--shadow_every_n_steps", "0"]


def ring_module(**options) -> nn.Module:
    cfg = resolve(TrainConfig(dataset="ring", g_width=16, d_width=16, z_dim=8, **options))
    return build_module(cfg, data_shape(DATASETS["ring"], cfg.image_size))


def send_ema_to_one_mode(module: nn.Module) -> torch.Tensor:
    """Make the EMA's G (not the live one) map every z to the first ring mode; returns that mode (2,)."""
    mode = ring_modes()[0]
    last = module.g_ema.net.net[-2]  # the output Linear of MLPGenerator
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(mode)
    return mode


# -- the average ------------------------------------------------------------------------------
@pytest.mark.parametrize("device_flag", [False, True], ids=["no_flag", "flag_0"])
def test_average_after_hand_made_updates_equals_the_formula(device_flag):
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEMA(live, decay=0.9)
    expected = [p.detach().clone() for p in live.parameters()]
    for n in range(1, 5):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(torch.randn_like(p))
        live(torch.randn(4, 3))  # moves BatchNorm's running statistics
        ema.update(live, skip=torch.zeros(()) if device_flag else None)
        d = min(0.9, (1 + n) / (10 + n))  # TF's warm-up: 0.18, 0.25, 0.31, 0.36, then 0.9
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, live.parameters())]
    for got, want in zip(ema.net.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    for got, want in zip(ema.net.buffers(), live.buffers(), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # copied, not averaged
    assert int(ema.updates) == 4 and not any(p.requires_grad for p in ema.net.parameters())


def test_a_flagged_update_leaves_the_average_and_counts_for_the_warm_up():
    live = nn.Linear(3, 2)
    ema = WeightEMA(live, decay=0.99)
    before = [p.detach().clone() for p in ema.net.parameters()]
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    ema.update(live, skip=torch.ones(()))
    for got, want in zip(ema.net.parameters(), before, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert int(ema.updates) == 1 and ema.current_decay() == pytest.approx(3 / 12)


class NaNGAfter:
    """A G loss that turns NaN after ``n`` calls (the G update is then skipped under --on_nonfinite skip)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, fake_logits):
        self.calls += 1
        loss = losses.g_nonsaturating_loss(fake_logits)
        return loss * float("nan") if self.calls > self.n else loss


def test_skipped_g_updates_leave_the_ema_unchanged(tmp_path, monkeypatch):
    """NaN G losses from step 4 on: G's EMA equals that of a run stopped after 3 steps (D kept training)."""
    out = ["--out_dir", str(tmp_path), "--g_ema", "0.9", "--metric_every_n_epochs", "0", "--on_nonfinite", "skip"]
    weights = {}
    for name, steps in (("three", 3), ("nan", 8)):
        monkeypatch.setitem(losses.LOSSES, "nonsaturating",
                            losses.LossPair(losses.d_bce_loss, NaNGAfter(3), "test"))
        assert run_cli(main, [*RING, *out, "--run_name", name, "--max_steps", str(steps)]) == 0
        weights[name] = state(tmp_path / name)["state_dict"]
    three, nan = weights["three"], weights["nan"]
    assert int(nan["skipped_steps"]) == 5 and int(nan["g_ema.updates"]) == 8 and int(three["g_ema.updates"]) == 3
    params = [k for k in three if k.startswith("g_ema.net.") and k.endswith((".weight", ".bias"))]
    assert params
    for key in params:
        torch.testing.assert_close(nan[key], three[key], rtol=0, atol=0, msg=key)
        live = key.replace("g_ema.net.", "generator.")
        assert not torch.equal(nan[key], nan[live]), key  # an average, not the live weights


# -- sampling and metrics ---------------------------------------------------------------------
def test_sample_scatter_is_drawn_from_the_ema(tmp_path, monkeypatch):
    module = ring_module(g_ema=0.9)
    mode = send_ema_to_one_mode(module)
    drawn = []
    monkeypatch.setattr("gan_lightning.callbacks.samples.save_scatter", lambda points, *a, **k: drawn.append(points))
    trainer = SimpleNamespace(datamodule=None, loggers=[],
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)))
    SampleGrid(tmp_path, num_points=50).write(trainer, module, "ema")
    torch.testing.assert_close(drawn[0], mode.expand(50, 2))
    assert not torch.allclose(module.generate(n=50, ema=False), mode.expand(50, 2))  # the live G differs


@pytest.mark.parametrize("live_g", [False, True])
def test_metrics_score_the_ema_and_with_live_g_the_live_g(live_g):
    module = ring_module(g_ema=0.9)
    send_ema_to_one_mode(module)
    logged = {}
    module.log = lambda key, value, **kw: logged.__setitem__(key, value)
    trainer = SimpleNamespace(world_size=1, global_rank=0, is_global_zero=True, global_step=7,
                              strategy=SimpleNamespace(broadcast=lambda value, src: value))
    cb = MetricsCallback(num_samples=500, progress=False, live_g=live_g)
    cb.points, cb.dataset, cb.num_samples = True, "ring", 500
    cb.evaluate(trainer, module)
    assert logged[metric_key("high_quality", 500, ema=True)] == 1.0  # every EMA point sits on one mode
    assert logged[metric_key("modes_covered", 500, ema=True)] == 1.0
    plain = {metric_key(k, 500) for k in ("high_quality", "modes_covered")}
    assert (plain <= set(logged)) == live_g
    if live_g:
        assert logged[metric_key("high_quality", 500)] < 1.0


def test_metric_keys_of_an_ema_run():
    assert metric_key("fid", 5000, "lenet", ema=True) == "fid/lenet_5k_ema"
    assert best_of("fid/lenet_5k_ema") == "min" and best_of("modes_covered/2.5k_ema") == "max"
    assert run_metric_keys(TrainConfig(dataset="ring")) == {"modes_covered/2.5k", "high_quality/2.5k"}
    assert run_metric_keys(TrainConfig(dataset="ring", g_ema=0.99)) == {"modes_covered/2.5k_ema",
                                                                        "high_quality/2.5k_ema"}
    both = run_metric_keys(TrainConfig(dataset="mnist5k", g_ema=0.99, metrics="fid", metric_live_g=True))
    assert both == {"fid/lenet_5k", "fid/lenet_5k_ema"}
    assert run_metric_keys(TrainConfig(dataset="ring", metric_live_g=True)) == {"modes_covered/2.5k",
                                                                                "high_quality/2.5k"}


def test_a_sweep_may_name_the_ema_key():
    from gan_lightning.experiments.sweeps import load_sweep, sweep_problems

    sweep = load_sweep(ROOT / "sweeps" / "smoke.yaml")
    sweep["metric"]["name"] = "fid/lenet_1k_ema"
    assert sweep_problems(sweep) and "fid/lenet_1k_ema" in sweep_problems(sweep)[0]
    sweep["parameters"]["g_ema"] = {"value": 0.999}
    assert sweep_problems(sweep) == []


@pytest.mark.parametrize("live_g", [False, True])
def test_ring_run_logs_the_ema_keys(tmp_path, live_g):
    flags = ["--g_ema", "0.9", "--max_steps", "20", "--metric_num_samples", "500",
             *(["--metric_live_g"] if live_g else [])]
    assert run_cli(main, [*RING, *flags, "--out_dir", str(tmp_path), "--run_name", "r"]) == 0
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    logged = {k for r in rows for k, v in r.items() if v and k.startswith(("modes_covered/", "high_quality/"))}
    ema = {"modes_covered/500_ema", "high_quality/500_ema"}
    assert logged == (ema | {"modes_covered/500", "high_quality/500"} if live_g else ema)
    assert logged == run_metric_keys(TrainConfig(dataset="ring", g_ema=0.9, metric_num_samples=500,
                                                 metric_live_g=live_g))
    sd = state(tmp_path / "r")["state_dict"]
    assert int(sd["g_ema.updates"]) == int(sd["g_steps"]) == 20


# -- checkpoints, resume, errors ---------------------------------------------------------------
def test_exact_resume_with_g_ema(tmp_path):
    """A run split at the first epoch end and resumed equals one that never stopped, EMA included."""
    out = ["--out_dir", str(tmp_path), "--g_ema", "0.99", "--metric_every_n_epochs", "0",
           "--on_nonfinite", "skip"]
    assert run_cli(main, [*RING, *out, "--run_name", "straight", "--max_epochs", "2"]) == 0
    assert run_cli(main, [*RING, *out, "--run_name", "split", "--max_epochs", "1"]) == 0
    assert run_cli(main, [*RING, "--out_dir", str(tmp_path), "--run_name", "split", "--resume", "last",
                          "--max_epochs", "2"]) == 0
    a, b = state(tmp_path / "straight"), state(tmp_path / "split")
    assert int(a["state_dict"]["g_ema.updates"]) == int(a["state_dict"]["g_steps"]) > 1
    assert any(k.startswith("g_ema.net.") for k in a["state_dict"])
    assert_same_training(a, b)


@pytest.mark.parametrize("value", ["1.0", "-0.1", "nan"])
def test_bad_g_ema_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, value):
    assert run_cli(main, [*RING, "--g_ema", value, "--out_dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --g_ema: must be"), err  # nan: the parser's "finite"
    assert not (tmp_path / "runs").exists()


def _evaluate_main():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_evaluate_scores_the_ema_by_default_and_the_live_g_on_request(tmp_path, capsys):
    evaluate = _evaluate_main()
    module = ring_module(g_ema=0.9)
    send_ema_to_one_mode(module)
    path = tmp_path / "ring.ckpt"
    config = TrainConfig(dataset="ring", g_width=16, d_width=16, z_dim=8, g_ema=0.9).to_dict()
    torch.save({"state_dict": module.state_dict(), "gan_lightning": {"version": "0.1.0", "config": config}}, path)
    reports = {}
    for g in ("", "ema", "live"):
        assert run_cli(evaluate, [str(path), "--json", "--num_samples", "500", "--device", "cpu",
                                  *(["--g", g] if g else [])]) == 0
        reports[g] = json.loads(capsys.readouterr().out)
    assert reports[""] == {**reports["ema"], "seconds": reports[""]["seconds"]}
    assert reports["ema"]["generator"] == "ema" and reports["ema"]["high_quality"] == 1.0
    assert reports["ema"]["names"]["high_quality"] == "high_quality/500_ema"
    assert reports["live"]["generator"] == "live" and reports["live"]["high_quality"] < 1.0
    assert reports["live"]["names"]["high_quality"] == "high_quality/500"

    plain = tmp_path / "plain.ckpt"
    config = TrainConfig(dataset="ring", g_width=16, d_width=16, z_dim=8).to_dict()
    torch.save({"state_dict": ring_module().state_dict(), "gan_lightning": {"version": "0.1.0", "config": config}},
               plain)
    assert run_cli(evaluate, [str(plain), "--g", "ema", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--g live" in err, err
