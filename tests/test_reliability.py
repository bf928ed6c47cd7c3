"""Never lose a run: exact resume, preemption (SIGTERM), atomic checkpoints, divergence."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from gan_lightning import losses
from gan_lightning.checkpoints import AtomicCheckpointIO
from gan_lightning.cli import run_cli
from gan_lightning.training import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "digits", "--image_size", "8", "--arch", "mlp", "--batch_size", "64", "--g_width", "16",
         "--d_width", "16", "--z_dim", "8", "--log_every_n_steps", "5"]
# Every piece of state that must survive a resume: noise progress, historical averages, VBN reference.
STATEFUL = ["--noise_std", "0.5", "--noise_schedule", "linear", "--noise_anneal_steps", "100",
            "--historical_averaging", "0.01", "--g_norm", "vbn", "--vbn_ref_size", "8"]


def state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_exact_resume_matches_straight_training(tmp_path):
    out = ["--out_dir", str(tmp_path)]
    assert run_cli(main, [*SMALL, *STATEFUL, *out, "--run_name", "straight", "--max_epochs", "2"]) == 0
    assert run_cli(main, [*SMALL, *STATEFUL, *out, "--run_name", "split", "--max_epochs", "1"]) == 0
    assert run_cli(main, [*SMALL, *out, "--run_name", "split", "--resume", "last", "--max_epochs", "2"]) == 0
    a, b = state(tmp_path / "straight"), state(tmp_path / "split")
    assert int(a["state_dict"]["g_steps"]) == int(b["state_dict"]["g_steps"]) > 22
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
        else:
            assert b["state_dict"][key] == value, key  # e.g. the noise schedule's progress
    assert a["state_dict"]["d_input._extra_state"]["step"] == int(a["state_dict"]["g_steps"])
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        for k, s in opt_a["state"].items():
            torch.testing.assert_close(opt_b["state"][k]["exp_avg"], s["exp_avg"], rtol=0, atol=0)


def test_exact_resume_of_the_semi_supervised_task_with_its_ema(tmp_path):
    """K+1 GAN: labeled and unlabeled batches, EMA of D and counters continue exactly after a resume."""
    ssl = ["--task", "semi_supervised", "--labels_per_class", "5", "--ema_decay", "0.99", "--lr_g", "0.003",
           "--lr_d", "0.003", "--metric_every_n_epochs", "0"]
    out = ["--out_dir", str(tmp_path)]
    assert run_cli(main, [*SMALL, *ssl, *out, "--run_name", "straight", "--max_epochs", "2"]) == 0
    assert run_cli(main, [*SMALL, *ssl, *out, "--run_name", "split", "--max_epochs", "1"]) == 0
    assert run_cli(main, [*SMALL, *out, "--run_name", "split", "--resume", "last", "--max_epochs", "2"]) == 0
    a, b = state(tmp_path / "straight")["state_dict"], state(tmp_path / "split")["state_dict"]
    assert int(a["d_steps"]) == int(b["d_steps"]) == 2 * (1437 // 64)
    assert int(a["ema.updates"]) == int(a["d_steps"])
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0, msg=key)


def test_atomic_checkpoint_survives_a_crash_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    good = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint") if hasattr(f, "write") else Path(f).write_bytes(b"half a checkpoint")
        raise OSError("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


class NaNAfter:
    """A D loss that turns NaN after `n` calls (a stand-in for a run that blows up)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, real_logits, fake_logits):
        self.calls += 1
        loss = losses.d_bce_loss(real_logits, fake_logits)
        return loss * float("nan") if self.calls > self.n else loss


def test_divergence_stops_with_one_line_and_keeps_checkpoint(tmp_path, monkeypatch, capsys):
    out = ["--out_dir", str(tmp_path), "--run_name", "r"]
    assert run_cli(main, [*SMALL, *out, "--max_epochs", "1"]) == 0
    ckpt = tmp_path / "r" / "checkpoints" / "last.ckpt"
    good = ckpt.read_bytes()
    monkeypatch.setitem(losses.LOSSES, "nonsaturating",
                        losses.LossPair(NaNAfter(5), losses.g_nonsaturating_loss, "test"))
    capsys.readouterr()
    assert run_cli(main, [*SMALL, *out, "--resume", "last", "--max_epochs", "3"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("diverged: non-finite D loss") and "G step 27" in err[-1], err
    assert ckpt.read_bytes() == good


def test_divergence_skip_keeps_training_finite(tmp_path, monkeypatch):
    monkeypatch.setitem(losses.LOSSES, "nonsaturating",
                        losses.LossPair(NaNAfter(3), losses.g_nonsaturating_loss, "test"))
    out = ["--out_dir", str(tmp_path), "--run_name", "s"]
    assert run_cli(main, [*SMALL, *out, "--max_steps", "8", "--on_nonfinite", "skip"]) == 0
    sd = state(tmp_path / "s")["state_dict"]
    assert int(sd["skipped_steps"]) == 5  # D losses 4..8 were NaN and skipped
    assert int(sd["g_steps"]) == 8
    assert all(torch.isfinite(v).all() for v in sd.values() if isinstance(v, torch.Tensor) and v.is_floating_point())


def test_sigterm_saves_checkpoint_and_resume_continues(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "--dataset", "ring", "--batch_size", "16",
            "--g_width", "16", "--d_width", "16", "--max_epochs", "100", "--out_dir", str(tmp_path),
            "--run_name", "pre"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = threading.Event()

    def watch():  # the progress bar on stdout shows batches going by
        buf = ""
        while True:
            chunk = proc.stdout.read(64)
            if not chunk:
                return
            buf = (buf + chunk)[-500:]
            done = [int(n) for n in re.findall(r"\| *(\d+)/\d+ \[", buf)]
            if done and max(done) >= 5:
                seen.set()

    threading.Thread(target=watch, daemon=True).start()
    assert seen.wait(240), "training did not start"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: saved" in err and "--resume last" in err
    steps = int(state(tmp_path / "pre")["state_dict"]["g_steps"])
    assert steps > 0
    assert run_cli(main, ["--out_dir", str(tmp_path), "--run_name", "pre", "--resume", "last",
                          "--max_steps", str(steps + 3)]) == 0
    assert int(state(tmp_path / "pre")["state_dict"]["g_steps"]) == steps + 3
