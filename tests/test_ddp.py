"""Two CPU processes (gloo) through scripts/train.py: the default strategy copes with two networks."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_training_writes_one_run(tmp_path):
    # A DDP test run earlier in this process (ddp_spawn) leaves MASTER_PORT etc. in os.environ; the
    # subprocess must pick its own free port, not reuse one that may still be held.
    dist_vars = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE")
    env = {**{k: v for k, v in os.environ.items() if k not in dist_vars}, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--dataset", "ring", "--accelerator", "cpu",
         "--devices", "2", "--batch_size", "16", "--g_width", "16", "--d_width", "16", "--max_steps", "6",
         "--log_every_n_steps", "2", "--out_dir", str(out), "--run_name", "ddp"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not used in producing the loss" not in proc.stderr
    assert [p.name for p in out.iterdir()] == ["ddp"]  # both ranks wrote into one run folder
    ckpts = list((out / "ddp" / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in ckpts] == ["last.ckpt"]
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)["state_dict"]
    assert int(state["g_steps"]) == 6
    assert int(state["images_seen"]) == 6 * 16 * 2  # counted over both ranks
    rows = list(csv.DictReader((out / "ddp" / "metrics.csv").open()))
    assert any(r.get("d/acc") for r in rows) and any(r.get("loss/g") for r in rows)
