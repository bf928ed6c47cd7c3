"""What train.py does with run folders: branching from another run's checkpoint, stale temporary
files, a finished run, Ctrl-C. Nothing of an existing run is ever lost."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
import yaml

from gan_lightning.trainer.checkpoints import remove_stale_temporaries
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main as train_main
from script_harness import RING, tree

FAST = [*RING, "--max_steps", "4"]


@pytest.fixture
def run_a(tmp_path):
    """A finished 4-step run ``A`` under ``tmp_path/runs``."""
    runs = tmp_path / "runs"
    assert run_cli(train_main, [*FAST, "--out_dir", str(runs), "--run_name", "A", "--logger", "csv"]) == 0
    return runs / "A"


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_path_with_another_run_name_branches_and_leaves_the_source_alone(run_a, capsys):
    before = tree(run_a)
    ckpt = run_a / "checkpoints" / "last.ckpt"
    code = run_cli(train_main, ["--resume", str(ckpt), "--run_name", "B", "--lr_d", "1e-4", "--max_steps", "8"])
    assert code == 0, capsys.readouterr().err
    assert tree(run_a) == before  # config.yaml, last.ckpt and metrics.csv of A untouched
    branch = run_a.parent / "B"
    origin = yaml.safe_load((branch / "origin.yaml").read_text())
    assert origin == {"resumed_from": str(ckpt.resolve()), "g_steps": 4}
    assert yaml.safe_load((branch / "config.yaml").read_text())["lr_d"] == 1e-4
    assert int(_weights(branch / "checkpoints" / "last.ckpt")["g_steps"]) == 8
    assert yaml.safe_load((run_a / "config.yaml").read_text())["lr_d"] == 2e-4


def test_resume_path_with_another_out_dir_branches_under_it(run_a, tmp_path, capsys):
    before = tree(run_a)
    other = tmp_path / "elsewhere"
    code = run_cli(train_main, ["--resume", str(run_a / "checkpoints" / "last.ckpt"), "--out_dir", str(other),
                                "--max_steps", "6"])
    assert code == 0, capsys.readouterr().err
    assert tree(run_a) == before
    assert int(_weights(other / "A" / "checkpoints" / "last.ckpt")["g_steps"]) == 6


def test_resume_path_of_the_same_run_continues_it(run_a, capsys):
    code = run_cli(train_main, ["--resume", str(run_a / "checkpoints" / "last.ckpt"), "--max_steps", "6"])
    assert code == 0, capsys.readouterr().err
    assert int(_weights(run_a / "checkpoints" / "last.ckpt")["g_steps"]) == 6
    assert not (run_a / "origin.yaml").exists()
    assert sorted(p.name for p in run_a.parent.iterdir()) == ["A"]


def test_a_finished_run_says_so_and_changes_nothing(run_a, capsys):
    before = tree(run_a)
    capsys.readouterr()
    assert run_cli(train_main, ["--resume", "last", "--out_dir", str(run_a.parent), "--run_name", "A"]) == 0
    err = capsys.readouterr().err
    assert "nothing to train" in err and "--max_steps is 4" in err, err
    assert tree(run_a) == before


def test_stale_checkpoint_temporaries_are_removed_on_the_next_start(run_a, capsys):
    folder = run_a / "checkpoints"
    dead = folder / ".last.ckpt.tmp999999999"  # no such process
    dead.write_bytes(b"x" * 1000)
    mine = folder / f".last.ckpt.tmp{os.getppid()}"  # a live writer's (the parent process): kept
    mine.write_bytes(b"y")
    capsys.readouterr()
    assert run_cli(train_main, ["--resume", "last", "--out_dir", str(run_a.parent), "--run_name", "A",
                                "--max_steps", "5"]) == 0
    assert "removed" in capsys.readouterr().err
    assert not dead.exists() and mine.exists()
    assert remove_stale_temporaries(folder) == []


def test_ctrl_c_exits_130_with_how_to_resume(tmp_path, capsys):
    class Interrupt(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    from gan_lightning.runs import training

    original = training.build_trainer
    training.build_trainer = lambda cfg, run_dir, extra=(): original(cfg, run_dir, [Interrupt()])
    try:
        capsys.readouterr()
        code = run_cli(train_main, [*RING, "--max_steps", "-1", "--max_epochs", "3", "--out_dir",
                                    str(tmp_path), "--run_name", "C"])
    finally:
        training.build_trainer = original
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted; continue from the last checkpoint with --resume last --run_name C" in err, err
    assert "Traceback" not in err
    assert (tmp_path / "C" / "checkpoints" / "last.ckpt").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards


# -- what a branch may change: penalties and weight averages add no network, shape flags name themselves (issue 25)
def _branch(run_a, *flags):
    return run_cli(train_main, ["--resume", str(run_a / "checkpoints" / "last.ckpt"), "--run_name", "B", *flags])


@pytest.mark.parametrize("flags", [["--remedy", "r1"], ["--r2_weight", "1", "--reg_every", "2"],
                                   ["--historical_averaging", "0.1"]])
def test_a_branch_may_add_a_penalty_whose_state_starts_afresh(run_a, capsys, flags):
    assert _branch(run_a, *flags, "--max_steps", "6") == 0, capsys.readouterr().err
    state = _weights(run_a.parent / "B" / "checkpoints" / "last.ckpt")
    assert int(state["g_steps"]) == 6 and any(k.startswith("d_penalties.") for k in state)


def test_a_branch_may_drop_a_penalty(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run_cli(train_main, [*FAST, "--out_dir", str(runs), "--run_name", "A", "--remedy", "r1"]) == 0
    assert _branch(runs / "A", "--remedy", "none", "--r1_weight", "0", "--max_steps", "6") == 0, capsys.readouterr().err
    assert not any(k.startswith("d_penalties.") for k in _weights(runs / "B" / "checkpoints" / "last.ckpt"))


def test_adding_g_ema_on_a_branch_starts_the_average_from_the_loaded_g(run_a, capsys):
    capsys.readouterr()
    assert _branch(run_a, "--g_ema", "0.9", "--max_steps", "5") == 0  # one G step
    err = capsys.readouterr().err
    assert "notice: --g_ema on a checkpoint without an average of G: the average starts from the checkpoint's G " \
           "weights" in err, err
    before, after = _weights(run_a / "checkpoints" / "last.ckpt"), _weights(run_a.parent / "B" / "checkpoints" / "last.ckpt")
    d = min(0.9, 2 / 11)  # WeightEMA's warm-up decay at its first update
    for key in (k for k in after if k.startswith("generator.") and after[k].is_floating_point()):
        ema = after["g_ema.net." + key[len("generator."):]]
        if "running_" in key:  # BatchNorm statistics are copied, not averaged
            torch.testing.assert_close(ema, after[key])
        else:
            torch.testing.assert_close(ema, d * before[key] + (1 - d) * after[key])
    assert int(after["g_ema.updates"]) == 1


def test_dropping_g_ema_on_a_branch_says_so(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run_cli(train_main, [*FAST, "--out_dir", str(runs), "--run_name", "A", "--g_ema", "0.9"]) == 0
    capsys.readouterr()
    assert _branch(runs / "A", "--g_ema", "0", "--max_steps", "6") == 0
    err = capsys.readouterr().err
    assert "notice: --g_ema 0 on a checkpoint with an average of G: the average is dropped, this run uses the " \
           "live G" in err, err
    assert not any(k.startswith("g_ema.") for k in _weights(runs / "B" / "checkpoints" / "last.ckpt"))


@pytest.mark.parametrize("flags, says", [
    (["--remedy", "sn"], "--remedy sn (--d_spectral_norm=True) differs from the checkpoint's False; omit --remedy sn "
                         "to resume"),
    (["--minibatch_discrimination"], "--minibatch_discrimination=True differs from the checkpoint's False; omit "
                                     "--minibatch_discrimination"),
    (["--g_norm", "vbn"], "--g_norm=vbn differs from the checkpoint's 'batch'; omit --g_norm"),
])
def test_a_branch_that_changes_a_network_names_the_flag_and_writes_nothing(run_a, capsys, flags, says):
    from script_harness import assert_one_line

    before = tree(run_a.parent)
    capsys.readouterr()
    code = _branch(run_a, *flags, "--max_steps", "6")
    assert_one_line(code, capsys.readouterr().err, says)
    assert tree(run_a.parent) == before
