"""Never lose a run: exact resume, preemption (SIGTERM), atomic checkpoints, divergence."""

import csv
import gc
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from gan_lightning.core import losses
from gan_lightning.build import build_module
from gan_lightning.trainer.checkpoints import AtomicCheckpointIO
from gan_lightning.torch_utils import rng_state
from gan_lightning.runs.cli import run_cli
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.data.sampling import EpochShuffle, ResumableLoader
from gan_lightning.modules.gan import GAN
from gan_lightning.runs.training import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "digits", "--image_size", "8", "--arch", "mlp", "--batch_size", "64", "--g_width", "16",
         "--d_width", "16", "--z_dim", "8", "--log_every_n_steps", "5"]
# Every piece of state that must survive a resume: noise progress, historical averages, VBN reference.
STATEFUL = ["--noise_std", "0.5", "--noise_schedule", "linear", "--noise_anneal_steps", "100",
            "--historical_averaging", "0.01", "--g_norm", "vbn", "--vbn_ref_size", "8"]


def state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_rows_of_one_run(straight: Path, split: Path, stopped_at: str) -> list[dict[str, str]]:
    """``split``'s metrics.csv holds ``straight``'s rows, in order and once each; returns the others.

    The others may only be what a session evaluates when it stops (FID of the last epoch, the
    test error), at the step ``stopped_at`` where the split run's first session stopped.
    """
    expected, got = rows(straight), rows(split)
    extra = [r for r in got if r not in expected]
    assert [r for r in got if r not in extra] == expected
    assert all(r["step"] == stopped_at and not r["loss/d"] for r in extra), extra
    return extra


def assert_same_training(a: dict, b: dict) -> None:
    """Two checkpoints hold the same weights, buffers, counters and Adam moments, bit for bit."""
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
        else:
            assert b["state_dict"][key] == value, key  # e.g. the noise schedule's progress
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for k, s in opt_a["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(opt_b["state"][k][name], s[name], rtol=0, atol=0)


def test_exact_resume_matches_straight_training(tmp_path):
    out = ["--out_dir", str(tmp_path)]
    assert run_cli(main, [*SMALL, *STATEFUL, *out, "--run_name", "straight", "--max_epochs", "2"]) == 0
    assert run_cli(main, [*SMALL, *STATEFUL, *out, "--run_name", "split", "--max_epochs", "1"]) == 0
    assert run_cli(main, [*SMALL, *out, "--run_name", "split", "--resume", "last", "--max_epochs", "2"]) == 0
    a, b = state(tmp_path / "straight"), state(tmp_path / "split")
    assert int(a["state_dict"]["g_steps"]) == int(b["state_dict"]["g_steps"]) > 22
    assert_same_training(a, b)
    assert a["state_dict"]["d_input._extra_state"]["step"] == int(a["state_dict"]["g_steps"])
    # The d/acc window of steps 20-24 spans the epoch end at batch 22: its sums were in the checkpoint.
    assert_rows_of_one_run(tmp_path / "straight", tmp_path / "split", stopped_at="21")


def test_a_resumed_run_trains_at_the_rates_it_is_given_not_those_it_was_saved_with(tmp_path, capsys):
    out = ["--out_dir", str(tmp_path), "--run_name", "r"]
    assert run_cli(main, [*SMALL, *out, "--max_epochs", "1"]) == 0
    before = state(tmp_path / "r")
    capsys.readouterr()
    assert run_cli(main, [*SMALL, *out, "--resume", "last", "--max_epochs", "2", "--lr_g", "1e-9",
                          "--beta1", "0.9"]) == 0
    said = capsys.readouterr()
    assert "notice: --lr_g 1e-09 on a checkpoint trained at 0.0002: the optimizer goes on at --lr_g 1e-09" in (
        said.out + said.err)
    after = state(tmp_path / "r")
    d_opt, g_opt = after["optimizer_states"]  # [D, G]
    assert g_opt["param_groups"][0]["lr"] == 1e-9 and d_opt["param_groups"][0]["lr"] == 2e-4
    assert tuple(g_opt["param_groups"][0]["betas"]) == (0.9, 0.999)
    g_moved = [(after["state_dict"][k] - v).abs().max().item() for k, v in before["state_dict"].items()
               if k.startswith("generator.") and v.is_floating_point() and "running" not in k]
    d_moved = [(after["state_dict"][k] - v).abs().max().item() for k, v in before["state_dict"].items()
               if k.startswith("discriminator.") and v.is_floating_point()]
    assert max(g_moved) < 1e-6 < max(d_moved)  # G frozen at lr 1e-9, D trained on at its rate


@pytest.mark.parametrize("first, then", [
    (["--max_epochs", "1"], ["--max_epochs", "2"]),
    (["--max_epochs", "2", "--max_steps", "30"], ["--max_steps", "-1"]),  # batch 8 of 22 of epoch 1
], ids=["at_epoch_end", "mid_epoch_max_steps"])
def test_exact_resume_of_the_semi_supervised_task_with_its_ema(tmp_path, first, then):
    """K+1 GAN: labeled and unlabeled batches, EMA of D and counters continue exactly after a resume."""
    ssl = ["--task", "semi_supervised", "--labels_per_class", "5", "--ema_decay", "0.99", "--lr_g", "0.003",
           "--lr_d", "0.003", "--metric_every_n_epochs", "0"]
    out = ["--out_dir", str(tmp_path)]
    assert run_cli(main, [*SMALL, *ssl, *out, "--run_name", "straight", "--max_epochs", "2"]) == 0
    assert run_cli(main, [*SMALL, *ssl, *out, "--run_name", "split", *first]) == 0
    assert run_cli(main, [*SMALL, *out, "--run_name", "split", "--resume", "last", *then]) == 0
    a, b = state(tmp_path / "straight")["state_dict"], state(tmp_path / "split")["state_dict"]
    assert int(a["d_steps"]) == int(b["d_steps"]) == 2 * (1437 // 64)
    assert int(a["ema.updates"]) == int(a["d_steps"])
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0, msg=key)
    # Same rows, plus, for a stop mid-epoch, the test error Lightning measures when a session stops.
    extra = assert_rows_of_one_run(tmp_path / "straight", tmp_path / "split", stopped_at="29")
    assert [sorted(k for k, v in r.items() if v) for r in extra] == (
        [["epoch", "progress/g_steps", "progress/images_seen", "ssl/test_error", "ssl/test_error_live", "step"]]
        if "--max_steps" in first else [])


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
            "--g_width", "16", "--d_width", "16", "--max_epochs", "100", "--logger", "csv",
            "--out_dir", str(tmp_path), "--run_name", "pre"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    # Off a terminal there is no progress bar to watch; the CSV logger first writes after 100 batches.
    started, deadline = tmp_path / "pre" / "metrics.csv", time.monotonic() + 240
    while not started.is_file():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: saved" in err and "--resume last" in err
    steps = int(state(tmp_path / "pre")["state_dict"]["g_steps"])
    assert steps > 0
    assert run_cli(main, ["--out_dir", str(tmp_path), "--run_name", "pre", "--resume", "last",
                          "--max_steps", str(steps + 3)]) == 0
    assert int(state(tmp_path / "pre")["state_dict"]["g_steps"]) == steps + 3


# -- stopping and resuming a run mid-epoch ---------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_resumable_loader_serves_the_rest_of_the_epoch(workers):
    data = TensorDataset(torch.arange(20))

    def loader() -> ResumableLoader:
        return ResumableLoader(data, batch_size=3, sampler=EpochShuffle(20, seed=1), drop_last=True,
                               num_workers=workers, persistent_workers=workers > 0)

    first = loader()
    first.sampler.set_epoch(2)
    whole = [b[0].tolist() for b in first]  # 6 batches of epoch 2's order
    assert first.state_dict() == {"batches_served": 6}
    it = iter(first)
    head = [next(it)[0].tolist() for _ in range(2)]
    assert head == whole[:2] and first.state_dict() == {"batches_served": 2}

    resumed = loader()
    resumed.load_state_dict(first.state_dict())
    it = iter(resumed)
    resumed.sampler.set_epoch(2)  # as Lightning does when it resumes: after iter(), before next()
    assert [b[0].tolist() for b in it] == whole[2:]
    assert resumed.state_dict() == {"batches_served": 6}
    assert [b[0].tolist() for b in resumed] == whole  # the next pass is whole again
    resumed.load_state_dict({"batches_served": 6})  # saved at an epoch end: nothing to skip
    assert [b[0].tolist() for b in resumed] == whole
    assert len(resumed) == 6


# ring: 10,000 training points, 39 batches of 256 an epoch; 100 G steps end in epoch 2.
RING = ["--dataset", "ring", "--z_dim", "2", "--g_width", "16", "--d_width", "16", "--batch_size", "256",
        "--logger", "csv", "--metric_every_n_epochs", "0", "--log_every_n_steps", "5"]  # shadow norms: every 50
STOPS = {  # how the first session ends -> (its flags, G step that signals it, the resume's flags)
    "max_steps": (["--max_steps", "50"], None, ["--max_steps", "100"]),  # batch 11 of epoch 1
    "epoch_end": (["--max_epochs", "1"], None, ["--max_epochs", "-1", "--max_steps", "100"]),
    "sigterm": (["--max_steps", "100"], (52, signal.SIGTERM), []),  # saved after batch 13 of epoch 1
    "ctrl_c": (["--max_steps", "100"], (52, signal.SIGINT), []),  # back to the end of epoch 0: 39 steps
}


@pytest.fixture(scope="module")
def straight_ring_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    assert run_cli(main, [*RING, "--out_dir", str(out), "--run_name", "r", "--max_epochs", "-1",
                          "--max_steps", "100"]) == 0
    return out / "r"


def signal_at(monkeypatch, g_step: int, signum: int) -> None:
    """Send ``signum`` to this process after G step ``g_step``, as a scheduler or Ctrl-C would."""
    original = GAN.on_train_batch_end

    def on_train_batch_end(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        if int(self.g_steps) == g_step:
            # Python runs the handler at its next check; were that inside a finalizer the garbage
            # collector runs, the KeyboardInterrupt of SIGINT would be swallowed (a full suite
            # leaves much to collect). With the collector off, it is raised in the sleep, here.
            gc.disable()
            try:
                os.kill(os.getpid(), signum)
                time.sleep(0.1)
            finally:
                gc.enable()

    monkeypatch.setattr(GAN, "on_train_batch_end", on_train_batch_end)


@pytest.mark.parametrize("stop", list(STOPS))
def test_stopped_and_resumed_run_equals_one_run(tmp_path, monkeypatch, straight_ring_run, stop):
    """Weights, Adam moments and every metrics.csv row as one run of 100 G steps, however the first part ended."""
    flags, signalled, resume = STOPS[stop]
    out = ["--out_dir", str(tmp_path), "--run_name", "r"]
    sigint = signal.getsignal(signal.SIGINT)
    try:
        # Ctrl-C as in a fresh process, whatever the suite's earlier tests or imports left installed.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with monkeypatch.context() as m:
            if signalled:
                signal_at(m, *signalled)
            code = run_cli(main, [*RING, *out, "--max_epochs", "-1", *flags])
        assert code == (130 if stop == "ctrl_c" else 0), f"SIGINT handler before the test: {sigint!r}"
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C from its first one on
    first = state(tmp_path / "r")
    assert int(first["state_dict"]["g_steps"]) == {"max_steps": 50, "epoch_end": 39, "sigterm": 52, "ctrl_c": 39}[stop]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli(main, [*out, "--resume", "last", *resume]) == 0
    assert not [w for w in caught if "resum" in str(w.message)], [str(w.message) for w in caught]
    a, b = state(straight_ring_run), state(tmp_path / "r")
    assert int(b["state_dict"]["g_steps"]) == 100
    assert_same_training(a, b)
    expected, got = rows(straight_ring_run), rows(tmp_path / "r")
    assert sorted({int(r["step"]) for r in expected}) == list(range(4, 100, 5))
    assert [r["step"] for r in expected if r.get("grad_norm/g_minimax")] == ["49", "99"]  # measured, not repeated
    assert got == expected  # no row twice (Ctrl-C logged steps 39-49 before its checkpoint's step)


@pytest.mark.parametrize("stop", ["max_steps", "epoch_end"])
def test_resume_with_data_workers_equals_one_run_without(tmp_path, straight_ring_run, stop):
    """--num_workers 2, stopped mid-epoch or at an epoch end and resumed: the batches, weights and Adam
    moments of one run in the main process (the order depends only on seed and epoch; the loader skips
    what it served, in worker processes too)."""
    flags, _, resume = STOPS[stop]
    out = ["--out_dir", str(tmp_path), "--run_name", "r"]
    workers = ["--num_workers", "2"]
    assert run_cli(main, [*RING, *workers, *out, "--max_epochs", "-1", *flags]) == 0
    assert run_cli(main, [*out, *workers, "--resume", "last", *resume]) == 0
    a, b = state(straight_ring_run), state(tmp_path / "r")
    assert int(b["state_dict"]["g_steps"]) == 100
    assert_same_training(a, b)
    assert rows(tmp_path / "r") == rows(straight_ring_run)


def test_a_stop_that_last_checkpoint_cannot_see_is_saved_with_a_warning(tmp_path, monkeypatch):
    """A stop asked for after LastCheckpoint's batch end (here the module's hook) cannot be resumed mid-epoch."""
    original = GAN.on_train_batch_end

    def on_train_batch_end(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        if int(self.g_steps) == 10:
            self.trainer.should_stop = True

    monkeypatch.setattr(GAN, "on_train_batch_end", on_train_batch_end)
    with pytest.warns(UserWarning, match=r"after batch 10 of 39 of epoch 0 .* skips its remaining batches"):
        assert run_cli(main, [*RING, "--out_dir", str(tmp_path), "--run_name", "r", "--max_epochs", "3"]) == 0
    assert int(state(tmp_path / "r")["state_dict"]["g_steps"]) == 10


def test_each_rank_takes_back_its_own_random_state(monkeypatch):
    """A DDP checkpoint keeps every rank's RNG (latents differ per rank); fewer or more ranks warn."""
    module = build_module(resolve(TrainConfig(dataset="ring", z_dim=2, g_width=8, d_width=8)), (2,))
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(rng_state())
    saved = {"gan_lightning": {"rng": states[0], "rng_per_rank": states}}

    monkeypatch.setattr(module, "_trainer", SimpleNamespace(world_size=2, global_rank=1))
    module.on_load_checkpoint(saved)
    module.on_train_start()
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])  # rank 1 goes on with its own stream

    monkeypatch.setattr(module, "_trainer", SimpleNamespace(world_size=1, global_rank=0))
    module.on_load_checkpoint(saved)
    with pytest.warns(UserWarning, match="written by 2 process.* resumes on 1"):
        module.on_train_start()
    assert torch.equal(torch.get_rng_state(), states[0]["torch"])
