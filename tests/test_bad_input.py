"""Bad input to every script ends in one line and exit code 2, and leaves existing runs alone.

One real run (ring, MLP) is trained once; next to it a DCGAN run (another architecture), a file
with the DCGAN's weights under the ring run's config, a pickle that would create a folder if
unpickled with code execution, a truncated and a random file. Each case runs one script on them:
in a subprocess (the real entry point, at least one per script) or, where only the argument
handling matters, through ``run_cli`` in this process (a subprocess costs seconds of imports).
After every case the run folders are byte-for-byte unchanged (sha256 and mtime of every file),
nothing new was written anywhere under the fixture folder, and the pickle's payload never ran.
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

import pytest
import torch
import yaml

from gan_lightning.checkpoints import AtomicCheckpointIO
from gan_lightning.cli import run_cli
from gan_lightning.training import main as train_main

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--logger", "none", "--metric_every_n_epochs", "0", "--diagnostics", "false"]
RING = ["--dataset", "ring", "--z_dim", "2", "--g_width", "16", "--d_width", "16", "--batch_size", "64",
        "--max_steps", "5", *QUIET]
DCGAN = ["--dataset", "digits", "--image_size", "32", "--arch", "dcgan", "--z_dim", "8", "--g_width", "4",
         "--d_width", "4", "--batch_size", "16", "--max_steps", "2", *QUIET]


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


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    runs = root / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks; a second thread only fights the other jobs on the machine
    try:
        assert run_cli(train_main, [*RING, "--out_dir", str(runs), "--run_name", "ring"]) == 0
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

    sweep = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    sweep["parameters"]["lr_gen"] = {"value": 1e-4}  # not a flag of train.py (--lr_g is)
    f.bad_sweep = root / "bad_sweep.yaml"
    f.bad_sweep.write_text(yaml.safe_dump(sweep))
    f.smoke = ROOT / "sweeps" / "smoke.yaml"

    f.protected = {p: fingerprint(p) for p in (f.ring, f.dcgan)}
    return f


@functools.cache
def script_main(name: str):
    if name == "train":
        return train_main
    spec = importlib.util.spec_from_file_location(f"bad_input_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def case(id, script, argv, says, process=False):
    """A row: ``script``'s arguments built from the fixture's files, the text its one line must hold."""
    return pytest.param(script, argv, says, process, id=f"{script}-{id}" + ("-subprocess" if process else ""))


def out(f):
    return ["--out_dir", str(f.scratch)]


CASES = [
    # scripts/train.py
    case("unknown-flag", "train", lambda f: ["--bogus", "1"], "unknown flag --bogus", process=True),
    case("misspelled-flag", "train", lambda f: ["--lr_gen", "1e-4", *out(f)], "did you mean --lr_g?"),
    case("wrong-type", "train", lambda f: ["--batch_size", "abc", *out(f)], "--batch_size: expected int, got 'abc'",
         process=True),
    case("out-of-range", "train", lambda f: ["--lr_g", "-1", *out(f)], "--lr_g: must be > 0, got -1.0"),
    case("unknown-loss", "train", lambda f: ["--loss", "foo", *out(f)], "--loss: unknown value 'foo'; valid values"),
    case("missing-data-folder", "train", lambda f: ["--dataset", "folder", "--data_root", str(f.root / "nowhere"),
                                                    *out(f)], "dataset 'folder' not found under"),
    case("missing-config-file", "train", lambda f: ["--config", str(f.root / "nope.yaml"), *out(f)],
         "--config: no such file"),
    case("existing-run-without-resume", "train", lambda f: [*RING, "--out_dir", str(f.runs), "--run_name", "ring"],
         "already holds checkpoints; pass --resume last", process=True),
    case("resume-missing-file", "train", lambda f: ["--resume", str(f.root / "nope.ckpt"), *out(f)],
         "--resume: no checkpoint file at"),
    case("resume-last-of-no-run", "train", lambda f: ["--resume", "last", *out(f)], "no run under"),
    case("resume-random-bytes", "train", lambda f: ["--resume", str(f.random), *out(f)],
         "is not a readable checkpoint"),
    case("resume-truncated", "train", lambda f: ["--resume", str(f.truncated), *out(f)],
         "not a complete torch zip file"),
    case("resume-pickle-that-runs-code", "train", lambda f: ["--resume", str(f.code), *out(f)],
         "read without running code", process=True),
    case("resume-with-another-arch", "train", lambda f: ["--resume", str(f.ring), "--arch", "dcgan", *out(f)],
         "--arch=dcgan differs from the checkpoint's 'auto'"),
    case("resume-with-another-width", "train", lambda f: ["--resume", str(f.dcgan), "--g_width", "8", *out(f)],
         "--g_width=8 differs from the checkpoint's 4"),
    case("resume-checkpoint-of-another-arch", "train", lambda f: ["--resume", str(f.hybrid), "--max_steps", "7"],
         "do not fit"),
    case("resume-with-a-flag-that-changes-d", "train",
         lambda f: ["--resume", str(f.ring), "--minibatch_discrimination", "true", "--max_steps", "7"],
         "do not fit"),
    # scripts/evaluate.py
    case("unknown-flag", "evaluate", lambda f: [str(f.ring), "--bogus"], "unrecognized arguments: --bogus"),
    case("wrong-type", "evaluate", lambda f: [str(f.ring), "--num_samples", "many"],
         "--num_samples: invalid int value: 'many'"),
    case("out-of-range", "evaluate", lambda f: [str(f.ring), "--num_samples", "-5"], "--num_samples: must be >= 0"),
    case("unknown-extractor", "evaluate", lambda f: [str(f.ring), "--extractor", "vgg"],
         "unknown feature extractor 'vgg'"),
    case("extractor-for-points", "evaluate", lambda f: [str(f.ring), "--extractor", "inception"],
         "ring is 2-D points: it gets mode coverage"),
    case("unknown-device", "evaluate", lambda f: [str(f.ring), "--device", "gpu7"], "--device: unknown device"),
    case("missing-file", "evaluate", lambda f: [str(f.root / "nope.ckpt")], "no checkpoint file at"),
    case("truncated", "evaluate", lambda f: [str(f.truncated)], "not a complete torch zip file"),
    case("pickle-that-runs-code", "evaluate", lambda f: [str(f.code)], "read without running code"),
    case("checkpoint-of-another-arch", "evaluate", lambda f: [str(f.hybrid)],
         "its weights do not fit the networks of the config", process=True),
    # scripts/probe_discriminator.py
    case("unknown-flag", "probe_discriminator", lambda f: ["--bogus", "1", *out(f)], "unknown flag --bogus",
         process=True),
    case("out-of-range", "probe_discriminator", lambda f: ["--d_iters", "0", *out(f)], "expected an integer >= 1"),
    case("pickle-that-runs-code", "probe_discriminator", lambda f: ["--g_ckpt", str(f.code), *out(f)],
         "read without running code", process=True),
    case("arch-flag-vs-checkpoint", "probe_discriminator", lambda f: ["--g_ckpt", str(f.dcgan), "--arch", "mlp",
                                                                      *out(f)],
         "--arch=mlp differs from the checkpoint's 'dcgan'"),
    case("checkpoints-of-two-archs", "probe_discriminator", lambda f: ["--g_ckpt", f"{f.ring},{f.dcgan}", *out(f)],
         "was trained on other data than"),
    case("checkpoint-of-another-arch", "probe_discriminator", lambda f: ["--g_ckpt", str(f.hybrid), *out(f)],
         "its weights do not fit"),
    # scripts/sweep_local.py
    case("missing-yaml", "sweep_local", lambda f: [str(f.root / "nope.yaml"), *out(f)], "no such sweep file",
         process=True),
    case("unknown-parameter", "sweep_local", lambda f: [str(f.bad_sweep), *out(f)],
         "parameters.lr_gen: not a flag of scripts/train.py; did you mean lr_g?", process=True),
    case("wrong-type", "sweep_local", lambda f: [str(f.smoke), "--count", "x", *out(f)],
         "argument --count: invalid int value: 'x'", process=True),
    case("out-of-range", "sweep_local", lambda f: [str(f.smoke), "--count", "0", *out(f)],
         "--count: must be >= 1"),
    case("unknown-logger", "sweep_local", lambda f: [str(f.smoke), "--logger", "tb", *out(f)],
         "argument --logger: invalid choice: 'tb'"),
]


@pytest.mark.parametrize("script, argv, says, process", CASES)
def test_bad_input_is_one_line_exit_2_and_no_run_is_touched(files, capsys, script, argv, says, process):
    args = [str(a) for a in argv(files)]
    before = tree(files.root)
    if process:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # conftest: W&B offline, cache in tmp
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        capsys.readouterr()
        code = run_cli(script_main(script), args)
        stdout, stderr = capsys.readouterr()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == 2, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert stdout.strip() == "", stdout[-2000:]
    assert not files.marker.exists(), "unpickling ran the checkpoint's code"
    assert {p: fingerprint(p) for p in files.protected} == files.protected
    assert tree(files.root) == before  # nothing written, nothing changed: run folders, scratch, sweeps


def test_resume_loading_in_lightning_never_runs_pickled_code(files, monkeypatch):
    """What Trainer.fit(ckpt_path=...) calls: weights_only even when an environment variable says otherwise."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # would make torch's default weights_only=False
    io = AtomicCheckpointIO()
    with pytest.raises(Exception, match="posix.mkdir|nt.mkdir"):
        io.load_checkpoint(files.code)
    assert not files.marker.exists()
    loaded = io.load_checkpoint(files.ring)
    assert loaded["state_dict"].keys() == torch.load(files.ring, weights_only=True)["state_dict"].keys()
