"""scripts/train.py end to end on tiny settings: outputs, resume, W&B offline, protected checkpoints."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "ring", "--batch_size", "32", "--g_width", "16", "--d_width", "16",
        "--log_every_n_steps", "2", "--max_epochs", "3"]


def train(tmp_path, *extra):
    return run_cli(main, [*TINY, "--out_dir", str(tmp_path / "runs"), *extra])


def g_steps(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]["g_steps"])


def test_script_writes_run_folder(tmp_path):
    """The real script in a subprocess: run folder, config, checkpoint, CSV, sample PNG."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *TINY, "--max_steps", "6", "--out_dir", str(out),
         "--run_name", "r1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = out / "r1"
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert g_steps(run / "checkpoints" / "last.ckpt") == 6
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert rows and {"loss/d", "loss/g", "d/acc", "d/jsd_estimate", "grad_norm/d", "grad_norm/g"} <= set(rows[0])
    assert list((run / "samples").glob("*.png"))


def test_resume_last_continues_and_keeps_metrics(tmp_path):
    assert train(tmp_path, "--max_steps", "4", "--run_name", "r") == 0
    ckpt = tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt"
    assert g_steps(ckpt) == 4
    rows_before = len(list(csv.DictReader((ckpt.parents[1] / "metrics.csv").open())))
    assert train(tmp_path, "--max_steps", "10", "--resume", "last", "--run_name", "r") == 0
    assert g_steps(ckpt) == 10
    rows_after = len(list(csv.DictReader((ckpt.parents[1] / "metrics.csv").open())))
    assert rows_after > rows_before  # appended, not replaced


def test_resume_last_without_run_name_takes_newest(tmp_path):
    assert train(tmp_path, "--max_steps", "2", "--run_name", "old") == 0
    assert train(tmp_path, "--max_steps", "2", "--run_name", "new") == 0
    os.utime(tmp_path / "runs" / "old" / "checkpoints" / "last.ckpt", (1, 1))
    assert train(tmp_path, "--max_steps", "3", "--resume", "last") == 0
    assert g_steps(tmp_path / "runs" / "new" / "checkpoints" / "last.ckpt") == 3
    assert g_steps(tmp_path / "runs" / "old" / "checkpoints" / "last.ckpt") == 2


def test_resume_keeps_checkpoint_config(tmp_path, capsys):
    assert train(tmp_path, "--max_steps", "2", "--run_name", "r", "--z_dim", "5") == 0
    # Without --z_dim the stored 5 is used; a different explicit value is refused.
    assert train(tmp_path, "--max_steps", "3", "--resume", "last", "--run_name", "r") == 0
    capsys.readouterr()
    assert train(tmp_path, "--max_steps", "4", "--resume", "last", "--run_name", "r", "--z_dim", "6") == 2
    assert "differs from the checkpoint" in capsys.readouterr().err


def test_existing_run_is_never_overwritten(tmp_path, capsys):
    assert train(tmp_path, "--max_steps", "2", "--run_name", "r") == 0
    ckpt = tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert train(tmp_path, "--max_steps", "3", "--run_name", "r") == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and err.count("\n") == 1
    assert ckpt.read_bytes() == before


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    for path, fragment in ((bad, "not a readable checkpoint"), (foreign, "not a gan_lightning checkpoint")):
        assert train(tmp_path, "--resume", str(path)) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1
    assert bad.read_bytes() == b"not a checkpoint"


def test_resume_last_with_nothing_to_resume(tmp_path, capsys):
    assert train(tmp_path, "--resume", "last") == 2
    assert "no run under" in capsys.readouterr().err


def test_missing_data_folder_one_line(tmp_path, capsys):
    assert run_cli(main, ["--dataset", "cifar10", "--data_root", str(tmp_path / "nowhere"),
                          "--out_dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--download" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_more_devices_than_the_machine_has(tmp_path, capsys):
    assert train(tmp_path, "--accelerator", "gpu", "--devices", "2") == 2 or not torch.cuda.is_available()
    assert capsys.readouterr().err.startswith("error: ")


def test_wandb_logger_falls_back_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert train(tmp_path, "--max_steps", "2", "--run_name", "w", "--logger", "wandb") == 0
    err = capsys.readouterr().err
    assert "logging offline" in err and "wandb sync" in err
    run = tmp_path / "runs" / "w"
    assert list((run / "wandb").glob("offline-run-*"))
    assert (run / "metrics.csv").is_file()
    assert (run / "wandb_id.txt").read_text().strip()


def test_probe_callback_flag_logs_probe_keys(tmp_path):
    assert train(tmp_path, "--max_steps", "3", "--run_name", "p", "--probe_every_n_epochs", "1",
                 "--probe_d_iters", "12", "--max_epochs", "1") == 0
    rows = list(csv.DictReader((tmp_path / "runs" / "p" / "metrics.csv").open()))
    assert any(r.get("probe/final_d_accuracy") for r in rows)
