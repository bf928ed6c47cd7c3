"""One x-axis: every row a run logs carries its G steps and images seen, and W&B plots every key,
sample grids included, against one of them, with best-and-last summaries of the quality metrics."""

import csv

import pytest

from gan_lightning.metrics.keys import BEST
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

RING = ["--dataset", "ring", "--g_width", "16", "--d_width", "16", "--batch_size", "32", "--max_steps", "30",
        "--log_every_n_steps", "5", "--shadow_every_n_steps", "7", "--metric_num_samples", "500"]


@pytest.fixture
def wandb_calls(monkeypatch):
    """What the run handed W&B: define_metric calls (name, kwargs) and logged dicts."""
    from wandb.sdk import wandb_run

    calls = {"define": [], "log": []}
    define, log = wandb_run.Run.define_metric, wandb_run.Run.log

    def spy_define(self, name, *args, **kwargs):
        calls["define"].append((name, kwargs))
        return define(self, name, *args, **kwargs)

    def spy_log(self, data, *args, **kwargs):
        calls["log"].append(dict(data))
        return log(self, data, *args, **kwargs)

    monkeypatch.setattr(wandb_run.Run, "define_metric", spy_define)
    monkeypatch.setattr(wandb_run.Run, "log", spy_log)
    return calls


def test_every_logged_row_carries_the_progress_of_the_run(tmp_path):
    assert run_cli(main, [*RING, "--out_dir", str(tmp_path), "--run_name", "r"]) == 0
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    # loss rows every 5 batches, shadow norms every 7 (logged straight to the loggers), mode coverage at the end
    assert any(r["grad_norm/g_minimax"] for r in rows) and any(r["modes_covered/500"] for r in rows)
    g_steps = [int(r["progress/g_steps"]) for r in rows]
    assert g_steps == sorted(g_steps) and g_steps[-1] == 30
    for r in rows:
        assert int(r["progress/images_seen"]) == 32 * int(r["progress/g_steps"])
        assert int(r["progress/g_steps"]) == int(r["step"]) + 1  # one G step per batch here


@pytest.mark.parametrize("x_axis", ["g_steps", "images_seen"])
def test_wandb_plots_every_key_against_the_chosen_axis(tmp_path, wandb_calls, x_axis):
    assert run_cli(main, [*RING, "--out_dir", str(tmp_path), "--run_name", "r", "--logger", "wandb",
                          "--x_axis", x_axis]) == 0
    x = f"progress/{x_axis}"
    defined = dict(wandb_calls["define"])  # the last definition of each name
    assert defined["*"]["step_metric"] == x
    for name, best in BEST.items():
        glob = name if "/" in name else f"{name}/*"
        assert defined[glob]["step_metric"] == x and defined[glob]["summary"] == f"{best},last"
    logged = [d for d in wandb_calls["log"] if set(d) - {"trainer/global_step"}]
    assert any("samples" in d for d in logged) and any("modes_covered/500" in d for d in logged)
    for d in logged:  # losses, diagnostics, metrics and the sample grid alike
        assert d["progress/g_steps"] >= 1 and d["progress/images_seen"] == 32 * d["progress/g_steps"], d.keys()


def test_unknown_x_axis_is_one_line(tmp_path, capsys):
    assert run_cli(main, [*RING, "--out_dir", str(tmp_path), "--x_axis", "epochs"]) == 2
    err = capsys.readouterr().err
    assert "x_axis" in err and "g_steps" in err and err.count("\n") == 1
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
