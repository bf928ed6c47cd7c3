"""What a run prints: its headline metric at each evaluation and a closing result line, no bars in log files,
no lines about accelerators the machine lacks."""

import re

import lightning as L
import torch

from trainer_helpers import tiny_trainer
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.callbacks import MetricsCallback
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.metrics.fidelity import generate_samples
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

RING = ["--dataset", "ring", "--z_dim", "2", "--g_width", "16", "--d_width", "16", "--batch_size", "64",
        "--metric_every_n_epochs", "1", "--metric_num_samples", "500", "--logger", "csv"]


def test_a_run_prints_its_metric_at_each_evaluation_and_a_result_line(tmp_path, capsys):
    assert run_cli(main, [*RING, "--max_epochs", "2", "--out_dir", str(tmp_path), "--run_name", "r"]) == 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    # Not a terminal: no progress bar, so one line per evaluation instead.
    evaluations = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in evaluations] == ["epoch 1", "epoch 2"], err
    assert all("modes_covered/500 " in line and "(best " in line for line in evaluations), evaluations
    result = next(line for line in lines if line.startswith("result: "))
    match = re.search(r"modes_covered/500 (\S+) \(best (\S+) at G step (\d+)\).*; (\d+) G steps in", result)
    assert match, result
    last, best, at, steps = match.groups()
    g_steps = int(torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["g_steps"])
    assert int(steps) == g_steps and int(at) in (g_steps // 2, g_steps)  # measured after epoch 1 or 2
    assert float(best) >= float(last)  # modes covered: higher is better
    assert lines.index(result) < next(i for i, line in enumerate(lines) if line.startswith("diagnosis: "))
    assert "GPU available" not in err and "TPU available" not in err


def test_the_progress_bar_shows_the_headline_metric_and_its_best(tmp_path):
    cfg = resolve(TrainConfig(dataset="ring", z_dim=2, g_width=16, d_width=16, batch_size=64, g_ema=0.99))
    dm = build_datamodule(cfg)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg, dm.data_shape)
    metrics = MetricsCallback(num_samples=500, progress=False)
    trainer = tiny_trainer(tmp_path, callbacks=[metrics], max_epochs=2, limit_train_batches=3)
    trainer.fit(module, datamodule=dm)
    bar = trainer.progress_bar_metrics
    # With an EMA of G the samples come from it: its keys are the headline, with their best so far.
    for key in ("modes_covered/500_ema", "high_quality/500_ema"):
        assert key in bar and f"{key} best" in bar, bar
        assert bar[f"{key} best"] == metrics.best[key][0]
    assert "modes_covered/500" not in bar
    # The best stays off the loggers: metrics.csv has no "best" column.
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "best" not in header and "modes_covered/500_ema" in header
    assert metrics.summary().startswith("modes_covered/500_ema ")


def test_sample_generation_draws_no_bar_into_a_log_file(capsys):
    batches = generate_samples(lambda z: z, z_dim=2, start=0, end=10, seed=0, batch_size=5, device="cpu",
                               progress=True)
    assert torch.cat(list(batches)).shape == (10, 2)
    assert capsys.readouterr().err == ""  # pytest's captured stderr is not a terminal


def test_help_shows_a_default_only_where_there_is_one():
    import argparse

    from gan_lightning.runs.cli import DefaultsHelpFormatter

    p = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=3, help="a count")
    p.add_argument("--pick", default=None, help="a snapshot (default: the last)")
    p.add_argument("--names", default="", help="some names")
    text = " ".join(p.format_help().split())
    assert "a count (default: 3)" in text
    assert "(default: the last) (default" not in text and "(default: None)" not in text
    assert "some names (default: )" not in text


def test_a_resumed_run_reports_the_best_of_the_whole_run(tmp_path, capsys):
    out = ["--out_dir", str(tmp_path), "--run_name", "r"]
    assert run_cli(main, [*RING, "--max_epochs", "1", *out]) == 0
    first = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("result: "))
    best = float(re.search(r"\(best (\S+) at G step", first).group(1))
    assert run_cli(main, [*RING, "--max_epochs", "2", "--resume", "last", *out]) == 0
    again = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("result: "))
    resumed_best = float(re.search(r"\(best (\S+) at G step", again).group(1))
    assert resumed_best >= best  # modes covered: the best over both sessions, never only the second's
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    saved = next(v for k, v in state.items() if k.startswith("MetricsCallback"))
    assert set(saved["best"]) == {"modes_covered/500", "high_quality/500"}
