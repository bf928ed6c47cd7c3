"""The frozen-generator probe: summary numbers by hand, a tiny probe, the script's files and
errors, and the training-time ProbeCallback (logs, and leaves the run unchanged)."""

import csv
import importlib.util
import json
import sys
import types
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.testing import assert_close

from gan_lightning.callbacks.probe import ProbeCallback, fresh_copy
from gan_lightning.runs.cli import run_cli
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.build import build_datamodule, build_module, probe_discriminator, probe_norm
from gan_lightning.networks import MLPDiscriminator, MLPGenerator
from gan_lightning.errors import UsageError
from gan_lightning.diagnostics.probe import (
    CURVE_COLUMNS, SUMMARY_KEYS, check_targets, probe, running_mean, summarize,
)

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("fig1_d_error.png", "fig2_grad_minimax.png", "fig3_grad_nonsaturating.png", "fig_noise.png")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny networks gain nothing from a second thread, and on a busy 2-core machine it costs 4x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _script_main():
    spec = importlib.util.spec_from_file_location("probe_discriminator", ROOT / "scripts" / "probe_discriminator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# -- summarize ---------------------------------------------------------------------------------
def _rows(n=30, grad_every=5):
    rows = []
    for t in range(n):
        measured = t % grad_every == 0 or t == n - 1
        rows.append({
            "iter": t, "d_loss": float(n - t), "d_accuracy": 0.5 if t < 12 else 1.0,
            "grad_norm_minimax": float(t + 1) if measured else None,
            "grad_norm_minimax_std": 0.0 if measured else None,
            "grad_norm_nonsaturating": 100.0 - t if measured else None,
            "grad_norm_nonsaturating_std": 0.1 * t if measured else None,
        })
    return rows


def test_summarize_first_last_means_and_iters_to_accuracy():
    s = summarize(_rows())
    assert tuple(s) == SUMMARY_KEYS
    assert s["d_loss_first"] == pytest.approx(sum(range(21, 31)) / 10)  # d_loss 30..21 at t = 0..9
    assert s["d_loss_last"] == pytest.approx(sum(range(1, 11)) / 10)  # 10..1 at t = 20..29
    # gradient norms exist at t = 0, 5 (first 10) and t = 20, 25, 29 (last 10)
    assert s["grad_norm_minimax_first"] == pytest.approx((1 + 6) / 2)
    assert s["grad_norm_minimax_last"] == pytest.approx((21 + 26 + 30) / 3)
    assert s["grad_norm_nonsaturating_first"] == pytest.approx((100 + 95) / 2)
    assert s["grad_norm_nonsaturating_last"] == pytest.approx((80 + 75 + 71) / 3)
    assert s["grad_norm_nonsaturating_std_last"] == pytest.approx((2.0 + 2.5 + 2.9) / 3)
    assert s["final_d_accuracy"] == 1.0
    # accuracy 1 from t = 12: the first full window of 10 ones ends at t = 21
    assert s["iters_to_accuracy_0.99"] == 21


def test_summarize_ratios_and_decay_orders():
    rows = _rows()
    for r in rows:  # minimax norms 1000, 100, ... so first/last means are easy to work out
        if r["grad_norm_minimax"] is not None:
            r["grad_norm_minimax"] = 1000.0 if r["iter"] < 10 else 1.0
    s = summarize(rows)
    assert s["d_loss_drop"] == pytest.approx(s["d_loss_first"] / s["d_loss_last"])
    assert s["grad_norm_minimax_drop"] == pytest.approx(1000.0)
    assert s["grad_norm_minimax_decay_orders"] == pytest.approx(3.0)
    assert s["grad_norm_nonsaturating_growth"] == pytest.approx(
        s["grad_norm_nonsaturating_last"] / s["grad_norm_nonsaturating_first"])
    assert s["grad_norm_nonsaturating_growth"] < 1  # _rows' -log D norms fall


def _entry(epochs, std, acc, loss_drop, mm_drop, growth=2.0):
    return {"g_epochs": epochs, "noise_std": std, "final_d_accuracy": acc, "d_loss_drop": loss_drop,
            "grad_norm_minimax_drop": mm_drop, "grad_norm_nonsaturating_growth": growth}


def test_check_targets_per_snapshot():
    entries = [
        _entry(1, 0.0, 1.0, 500.0, 300.0), _entry(1, 1.0, 0.95, 2.0, 20.0), _entry(1, 10.0, 0.7, 1.5, 0.5),
        _entry(10, 0.0, 1.0, 500.0, 30.0), _entry(10, 10.0, 0.7, 1.5, None),
        _entry(25, 0.0, 0.999, 200.0, 200.0, growth=0.5),
    ]
    t1, t10, t25 = check_targets(entries)
    assert t1["met"] and t1["most_noise_std"] == 10.0  # std 1 misses, but only the largest std counts
    assert t10["no_noise"] == {"final_d_accuracy": True, "d_loss_drop": True, "grad_norm_minimax_drop": False,
                               "grad_norm_nonsaturating_growth": True}
    assert t10["most_noise"] == {"final_d_accuracy": True, "grad_norm_minimax_drop": False} and not t10["met"]
    assert t25["no_noise"]["grad_norm_nonsaturating_growth"] is False
    assert t25["most_noise"] is None and t25["most_noise_std"] is None and not t25["met"]  # no noisy run


def test_probe_discriminator_recipe():
    cfg = resolve(TrainConfig(dataset="mnist5k", image_size=28, d_width=8, minibatch_discrimination=True,
                              task="semi_supervised", arch="dcgan"))
    d = probe_discriminator(cfg, (1, 28, 28))
    kinds = {type(m).__name__ for m in d.modules()}
    assert not any("BatchNorm" in k for k in kinds) and "MinibatchDiscrimination" not in kinds
    assert "LayerNorm" in kinds or "GroupNorm" in kinds
    assert d(torch.zeros(3, 1, 28, 28)).shape == (3,)  # one logit, also for a semi-supervised config
    assert probe_norm(resolve(TrainConfig(arch="improved_mnist", image_size=28))) == "none"  # its only D
    with pytest.raises(UsageError, match="--probe_norm batch: the mlp discriminator accepts"):
        probe_norm(resolve(TrainConfig(arch="mlp", dataset="ring")), "batch")


@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_probe_learning_rate_schedule(monkeypatch, schedule):
    seen = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    g, real = MLPGenerator(2, (2,), width=8), torch.randn(100, 2)
    probe(g, real, lambda: MLPDiscriminator((2,), width=8), d_iters=4, batch_size=8, lr=0.01,
          lr_schedule=schedule, grad_batches=1, grad_every=10)
    expected = [0.01, 0.0075, 0.005, 0.0025] if schedule == "linear" else [0.01] * 4
    assert seen == pytest.approx(expected)
    with pytest.raises(ValueError, match="lr_schedule"):
        probe(g, real, lambda: MLPDiscriminator((2,)), d_iters=1, lr_schedule="cosine")


def test_summarize_needs_a_full_window_and_reports_none():
    rows = _rows(n=30)
    for r in rows:
        r["d_accuracy"] = 0.98
    assert summarize(rows)["iters_to_accuracy_0.99"] is None
    rows[0]["d_accuracy"] = 1.0  # one perfect batch is not a window of 10
    assert summarize(rows)["iters_to_accuracy_0.99"] is None
    for r in rows:
        r["d_accuracy"] = 0.99
    assert summarize(rows)["iters_to_accuracy_0.99"] == 9


def test_running_mean_is_trailing():
    assert running_mean([1, 2, 3, 4], window=2) == [1, 1.5, 2.5, 3.5]


# -- probe -------------------------------------------------------------------------------------
def _tiny_probe(generator, real, **kwargs):
    make_d = lambda: MLPDiscriminator((2,), width=8)  # noqa: E731
    return probe(generator, real, make_d, d_iters=12, batch_size=16, grad_batches=2, **kwargs)


def test_probe_rows_leave_g_and_rng_alone():
    g = MLPGenerator(2, (2,), width=8)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    real = torch.randn(100, 2) + 3.0
    rng = torch.get_rng_state()
    rows = _tiny_probe(g, real, grad_every=5)
    assert [r["iter"] for r in rows] == list(range(12))
    measured = [r["iter"] for r in rows if r["grad_norm_minimax"] is not None]
    assert measured == [0, 5, 10, 11]  # every 5 and the last
    assert all(r["grad_norm_nonsaturating_std"] >= 0 for r in rows if r["iter"] in measured)
    assert all(0 <= r["d_accuracy"] <= 1 and r["d_loss"] > 0 for r in rows)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics
    assert g.training


def test_probe_measurements_do_not_change_d_training_but_noise_does():
    g = MLPGenerator(2, (2,), width=8)
    real = torch.randn(100, 2) + 3.0
    losses = lambda rows: [r["d_loss"] for r in rows]  # noqa: E731
    every_1 = _tiny_probe(g, real, grad_every=1)
    every_5 = _tiny_probe(g, real, grad_every=5)
    assert losses(every_1) == losses(every_5)
    assert losses(_tiny_probe(g, real, grad_every=5, noise_std=0.5)) != losses(every_5)
    with pytest.raises(ValueError, match="d_iters"):
        probe(g, real, lambda: MLPDiscriminator((2,)), d_iters=0)


# -- the script --------------------------------------------------------------------------------
TINY = ["--g_width", "8", "--d_width", "8", "--batch_size", "64", "--d_iters", "20", "--grad_every", "5",
        "--grad_batches", "2", "--logger", "none"]


def test_script_writes_curves_summary_and_figures(tmp_path, capsys):
    out = tmp_path / "probe"
    rc = run_cli(_script_main(), ["--quick", "--g_epochs", "1", "--noise_std", "0,0.5", *TINY, "--out_dir", str(out)])
    assert rc == 0, capsys.readouterr().err
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CURVE_COLUMNS
    assert len(rows) == 2 * 20
    assert {(r["remedy"], r["g_epochs"], r["noise_std"]) for r in rows} == {("none", "1", "0.0"), ("none", "1", "0.5")}
    assert rows[0]["grad_norm_minimax"] != "" and rows[1]["grad_norm_minimax"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert [(c["g_epochs"], c["noise_std"]) for c in summary["checkpoints"]] == [(1, 0.0), (1, 0.5)]
    for entry in summary["checkpoints"]:
        assert set(entry) == {"remedy", "g_epochs", "noise_std", *SUMMARY_KEYS}
    assert list(summary["remedies"]) == ["none"] and len(summary["remedies"]["none"]) == 2
    assert not (out / "fig_remedies.png").exists()  # one arm: nothing to overlay
    assert [t["g_epochs"] for t in summary["targets"]] == [1] and summary["targets"][0]["most_noise_std"] == 0.5
    assert summary["settings"]["d_iters"] == 20
    assert (summary["settings"]["probe_norm"], summary["settings"]["probe_schedule"]) == ("layer", "linear")
    report = (out / "results.md").read_text()
    assert "| 1 | 0 |" in report and "| 1 | 0.5 |" in report  # one table row per probe
    orders = summary["checkpoints"][0]["grad_norm_minimax_decay_orders"]
    assert f"G after 1 epoch: {orders:.2f} orders of magnitude" in report and "G: dcgan on mnist5k" in report
    assert summary["settings"]["train_config"]["dataset"] == "mnist5k"
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000


def test_script_probes_generators_from_checkpoints(tmp_path, capsys):
    from gan_lightning.runs.training import main as train_main

    train_args = ["--dataset", "ring", "--z_dim", "2", "--g_width", "8", "--d_width", "8", "--batch_size", "1000",
                  "--max_epochs", "2", "--out_dir", str(tmp_path), "--run_name", "ring", "--logger", "none"]
    assert run_cli(train_main, train_args) == 0
    ckpt = tmp_path / "ring" / "checkpoints" / "last.ckpt"
    out = tmp_path / "probe"
    rc = run_cli(_script_main(), ["--g_ckpt", str(ckpt), "--noise_std", "0", *TINY, "--out_dir", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoints"][0]["g_epochs"] == 2
    assert summary["settings"]["generators"][0]["g_steps"] == 20  # 10 batches of 1,000 ring points x 2 epochs
    assert summary["settings"]["train_config"]["dataset"] == "ring"  # from the checkpoint
    assert summary["settings"]["batch_size"] == 64  # from the command line, not the checkpoint's 1000
    capsys.readouterr()
    assert run_cli(_script_main(), ["--g_ckpt", str(ckpt), "--z_dim", "5", "--out_dir", str(tmp_path / "p2")]) == 2
    assert "--z_dim=5 differs from the checkpoint's 2" in capsys.readouterr().err
    # The same folder again: refused before any work, replaced with --overwrite.
    again = ["--g_ckpt", str(ckpt), "--noise_std", "0.5", *TINY, "--out_dir", str(out)]
    assert run_cli(_script_main(), again) == 2
    assert "already holds results" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text()) == summary
    assert run_cli(_script_main(), [*again, "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["checkpoints"][0]["noise_std"] == 0.5


def _corrupt(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"not a checkpoint")
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1"], "unknown flag --bogus"),
    (["--g_epochs", "1,x"], "--g_epochs"),
    (["--noise_std", "0,-1"], "--noise_std"),
    (["--d_iters", "-5"], "--d_iters"),
    (["--g_ckpt", "/nonexistent/run.ckpt"], "no checkpoint file"),
    (["--g_ckpt", "CORRUPT"], "not a readable checkpoint"),
    (["--max_epochs", "3"], "use --g_epochs"),
    (["--g_ckpt", "a.ckpt", "--g_epochs", "1"], "exclude each other"),
    (["--logger", "tensorboard"], "--logger"),
    (["--probe_norm", "group"], "--probe_norm"),
    (["--arch", "mlp", "--probe_norm", "batch"], "--probe_norm batch: the mlp discriminator accepts"),
    (["--probe_lr", "0"], "--probe_lr"),
    (["--probe_schedule", "cosine"], "--probe_schedule"),
    (["--quick", "--full"], "--quick and --full exclude each other"),
    (["--remedies", "r1,bogus"], "--remedies: unknown name 'bogus'; valid names are: noise, r1"),
    (["--remedies", "none"], "--remedies: unknown name 'none'"),
    (["--overlay_epochs", "1"], "--overlay_epochs picks the G snapshot of fig_remedies.png; it needs --remedies"),
    (["--remedies", "r1", "--g_epochs", "1", "--overlay_epochs", "3"], "--overlay_epochs 3: not one of --g_epochs [1]"),
    (["--remedies", "sn", "--probe_norm", "batch"], "--probe_norm batch: with --d_spectral_norm"),
    (["--remedy", "roth", "--loss", "hinge"], "--remedy roth does not apply to --loss hinge"),
])
def test_script_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    args = [_corrupt(tmp_path) if a == "CORRUPT" else a for a in args]
    assert run_cli(_script_main(), [*args, "--out_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out").exists()


# -- ProbeCallback -----------------------------------------------------------------------------
def _fit(callbacks):
    cfg = resolve(TrainConfig(dataset="ring", z_dim=2, g_width=8, d_width=8, batch_size=1000))
    dm = build_datamodule(cfg)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg, dm.data_shape)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, datamodule=dm)
    return trainer, module


def test_probe_callback_logs_and_leaves_training_unchanged():
    callback = ProbeCallback(every_n_epochs=1, d_iters=12, grad_every=4, batch_size=32)
    trainer, with_probe = _fit([callback])
    for key in ("probe/final_d_accuracy", "probe/grad_norm_minimax_last", "probe/grad_norm_nonsaturating_last"):
        assert key in trainer.callback_metrics
    assert 0 <= float(trainer.callback_metrics["probe/final_d_accuracy"]) <= 1
    assert callback.last_summary is not None
    _, without = _fit([])
    a, b = with_probe.state_dict(), without.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_probe_callback_builds_d_with_the_recipe_of_the_script():
    from gan_lightning.build import build_diagnostics

    shapes = []

    def make(shape):
        shapes.append(shape)
        return MLPDiscriminator(shape, width=8)

    callback = ProbeCallback(every_n_epochs=1, d_iters=3, grad_every=3, batch_size=32, make_discriminator=make)
    _fit([callback])
    assert shapes and set(shapes) == {(2,)}  # the shape of the real data, once per probe
    cfg = resolve(TrainConfig(dataset="mnist5k", image_size=28, d_width=8, probe_every_n_epochs=1))
    (probe_cb,) = [c for c in build_diagnostics(cfg) if isinstance(c, ProbeCallback)]
    kinds = {type(m).__name__ for m in probe_cb.make_discriminator((1, 28, 28)).modules()}
    assert not any("BatchNorm" in k for k in kinds)  # the training D has BatchNorm, the probe's has not
    with pytest.raises(ValueError, match="lr_schedule"):
        ProbeCallback(lr_schedule="step")


def test_fresh_copy_reinitializes_a_copy():
    d = MLPDiscriminator((2,), width=8)
    before = {k: v.clone() for k, v in d.state_dict().items()}
    fresh = fresh_copy(d)
    assert all(torch.equal(v, before[k]) for k, v in d.state_dict().items())
    assert not torch.equal(fresh.head.weight, d.head.weight)
    assert fresh.head.weight.shape == d.head.weight.shape


@pytest.mark.parametrize("kwargs", [{"every_n_epochs": 0}, {"d_iters": 0}, {"noise_std": -0.1}, {"lr": 0.0}])
def test_probe_callback_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ProbeCallback(**kwargs)


def test_outputs_and_wandb_logging_from_hand_made_rows(tmp_path, monkeypatch):
    from gan_lightning.experiments.probe_report import log_to_wandb, save_figures, write_outputs

    calls = {}

    class Run:
        def __init__(self, **kwargs):
            calls["init"], self.summary = kwargs, {}

        def log(self, data):
            calls["log"] = data

        def finish(self):
            calls["finished"] = True

    fake = types.SimpleNamespace(init=lambda **kw: calls.setdefault("run", Run(**kw)),
                                 Image=lambda path: ("image", path), Table=lambda columns, data: (columns, data))
    monkeypatch.setitem(sys.modules, "wandb", fake)  # a real offline run takes ~20 s to start
    monkeypatch.setenv("WANDB_MODE", "offline")
    rows = _rows()
    results = [{"remedy": "none", "g_epochs": e, "noise_std": s, "rows": rows, "summary": summarize(rows)}
               for e in (1, 3) for s in (0.0, 1.0)]
    summary = write_outputs(tmp_path, results, {"d_iters": 30})
    figures = save_figures(tmp_path, results)
    assert sorted(p.name for p in figures) == sorted(FIGURES)
    log_to_wandb(summary, figures, "gan_lightning", "probe", tmp_path, say=lambda message: None)
    assert calls["init"]["mode"] == "offline" and calls["init"]["job_type"] == "probe"
    assert set(calls["log"]) == {f"probe/{name[:-4]}" for name in FIGURES} | {"probe/curves"}
    columns, data = calls["log"]["probe/curves"]
    assert tuple(columns) == CURVE_COLUMNS and len(data) == 4 * 30
    assert data[1][CURVE_COLUMNS.index("grad_norm_minimax")] is None  # iteration 1 was not measured
    assert calls["run"].summary["probe/g3_noise1/iters_to_accuracy_0.99"] == 21
    assert calls["finished"]


# -- figures that read: lone spikes, legends, row titles, arm labels ----------------------------
def _curve_rows(values):
    """Probe rows with the -log D and minimax gradient norms measured at every iteration."""
    return [{"iter": t, "d_loss": 1.0, "d_accuracy": 0.9, "grad_norm_minimax": v, "grad_norm_minimax_std": 0.0,
             "grad_norm_nonsaturating": v, "grad_norm_nonsaturating_std": 0.1 * v} for t, v in enumerate(values)]


def test_a_steady_fall_is_no_spike_and_a_lone_collapse_is():
    from gan_lightning.experiments.probe_report import spikes

    falling = [10.0 * 10 ** (-t / 10) for t in range(60)]  # 6 orders of magnitude, as in the paper's Fig. 2
    assert not any(spikes(falling))
    steady = [40.0 + (t % 3) for t in range(60)]
    steady[30] = 3e-5  # one measurement collapses by 6 orders (docs/probe G@1, noise std 1)
    assert [i for i, s in enumerate(spikes(steady)) if s] == [30]


def test_fig_noise_keeps_a_lone_spike_off_the_axis_and_its_legend_off_the_curves():
    from gan_lightning.experiments.probe_report import noise_figure

    steady = [40.0 + (t % 3) for t in range(60)]
    spiky = list(steady)
    spiky[30] = 3e-5
    results = [{"remedy": "none", "g_epochs": e, "noise_std": s, "rows": _curve_rows(spiky if s else steady),
                "summary": {"final_d_accuracy": 0.9}} for e in (1, 10) for s in (0.0, 1.0)]
    fig = noise_figure(results)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[:3] == ["G after 1 epoch: D's accuracy", "G after 1 epoch: minimax cost",
                          "G after 1 epoch: -log D cost"] and titles[3].startswith("G after 10 epochs")
    assert not any("G@" in ax.get_ylabel() for ax in fig.axes)
    right = fig.axes[2]
    assert right.get_ylim()[0] > 1, "the spike at 3e-5 does not stretch the log axis"
    assert any("spike" in t.get_text() for t in right.texts)
    legends = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert legends == [fig.axes[2], fig.axes[5]]  # one per row, anchored right of its last panel
    fig.draw_without_rendering()
    assert all(ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1 for ax in legends), "outside"


def test_remedy_figure_names_the_noise_arm_once(tmp_path):
    from gan_lightning.experiments.probe_report import _arm_label

    assert _arm_label({"remedy": "noise", "noise_std": 0.2}) == "noise 0.2"
    assert _arm_label({"remedy": "none", "noise_std": 0.0}) == "none"
    assert _arm_label({"remedy": "r1", "noise_std": 1.0}) == "r1 + noise 1"
