"""Shared by the bad-input tests: a fixture folder of real runs and checkpoints, and a way to run a script.

``make_files`` trains one real run (ring, MLP) and one DCGAN run, and writes next to them a file
with the DCGAN's weights under the ring run's config, a pickle that would create a folder if
unpickled with code execution, a truncated and a random file, and a sweep with a misspelled
flag. ``run_script`` runs one script on them: in a subprocess (the real entry point) or,
where only the argument handling matters, through ``run_cli`` in this process (a subprocess
costs seconds of imports). ``tree`` fingerprints every path under a folder (sha256 and mtime),
so a test can assert that a refused input changed nothing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main as train_main

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--logger", "none", "--metric_every_n_epochs", "0", "--diagnostics", "false"]
RING = ["--dataset", "ring", "--z_dim", "2", "--g_width", "16", "--d_width", "16", "--batch_size", "64",
        "--max_steps", "5", *QUIET]
DCGAN = ["--dataset", "digits", "--image_size", "32", "--arch", "dcgan", "--z_dim", "8", "--g_width", "4",
         "--d_width", "4", "--batch_size", "16", "--max_steps", "2", *QUIET]
SCRIPTS = ("train", "evaluate", "probe_discriminator", "sweep_local", "compare_runs", "reproduce_improved_gan",
           "train_feature_extractor", "compare_remedies")


class RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: the stand-in for a checkpoint that runs arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def tree(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its sha256 and mtime (folders: their mtime, which new entries change)."""
    return {str(p.relative_to(folder)): fingerprint(p) if p.is_file() else ("dir", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def make_files(root: Path) -> SimpleNamespace:
    """Train the two runs under ``root/runs`` and write the broken files beside them."""
    runs = root / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks; a second thread only fights the other jobs on the machine
    try:
        assert run_cli(train_main, [*RING, "--out_dir", str(runs), "--run_name", "ring", "--logger", "csv"]) == 0
        assert run_cli(train_main, [*DCGAN, "--out_dir", str(runs), "--run_name", "dcgan"]) == 0
    finally:
        torch.set_num_threads(threads)
    f = SimpleNamespace(root=root, runs=runs, marker=root / "code_ran", scratch=root / "scratch",
                        ring=runs / "ring" / "checkpoints" / "last.ckpt",
                        dcgan=runs / "dcgan" / "checkpoints" / "last.ckpt")
    ring, dcgan = (torch.load(p, map_location="cpu", weights_only=True) for p in (f.ring, f.dcgan))

    f.hybrid = root / "hybrid.ckpt"  # the DCGAN's weights under the ring run's (MLP) config
    torch.save({**ring, "state_dict": dcgan["state_dict"]}, f.hybrid)
    f.code = root / "code.ckpt"  # otherwise a well-formed checkpoint
    torch.save({**ring, "payload": RunsCode(f.marker)}, f.code)
    control = root / "control.ckpt"  # the same payload, to show that it does run when code may run
    torch.save({**ring, "payload": RunsCode(root / "control_ran")}, control)
    torch.load(control, map_location="cpu", weights_only=False)
    assert (root / "control_ran").is_dir()
    f.truncated = root / "truncated.ckpt"
    f.truncated.write_bytes(f.ring.read_bytes()[: f.ring.stat().st_size // 2])
    f.random = root / "random.ckpt"
    f.random.write_bytes(random.Random(0).randbytes(4096))
    f.a_file = root / "a_file.txt"  # a file where a folder is expected
    f.a_file.write_text("not a folder\n")

    f.results = root / "results"  # what finished runs of the probe, the reproduction and compare_runs leave
    f.results.mkdir()
    for name in ("summary.json", "curves.csv", "results.md", "loss_d.md", "loss_d.png"):
        (f.results / name).write_text("earlier results\n")
    f.yaml = {}  # --config files of the wrong structure, by what is wrong
    for what, text in {"mapping-value": "lr_g: {a: 1}\n", "list-value": "batch_size: [1, 2]\n",
                       "date-value": "seed: 2020-01-01\n", "non-string-key": "1: 2\n", "nan-value": "lr_d: .nan\n",
                       "null-number": "lr_g: null\n", "top-level-list": "- lr_g\n"}.items():
        f.yaml[what] = root / f"{what}.yaml"
        f.yaml[what].write_text(text)
    f.yaml["binary"] = f.random

    sweep = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    sweep["parameters"]["lr_gen"] = {"value": 1e-4}  # not a flag of train.py (--lr_g is)
    f.bad_sweep = root / "bad_sweep.yaml"
    f.bad_sweep.write_text(yaml.safe_dump(sweep))
    f.smoke = ROOT / "sweeps" / "smoke.yaml"

    f.protected = {p: fingerprint(p) for p in (f.ring, f.dcgan)}
    return f


@functools.cache
def script_module(name: str):
    """``scripts/<name>.py`` as a module, imported once."""
    spec = importlib.util.spec_from_file_location(f"harness_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_main(name: str):
    """The ``main`` of ``scripts/<name>.py``."""
    return train_main if name == "train" else script_module(name).main


def run_script(script: str, args: list[str], capsys, process: bool = False) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``scripts/<script>.py args``."""
    if process:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # conftest: W&B offline, cache in tmp
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr
    capsys.readouterr()
    code = run_cli(script_main(script), args)
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def assert_one_line(code: int, stderr: str, says: str = "", exit_code: int = 2) -> str:
    """The contract for refused input: exit ``exit_code``, one ``error:`` line holding ``says``, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == exit_code, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(("error: ", "diverged: ")) and says in lines[0], lines
    return lines[0]
