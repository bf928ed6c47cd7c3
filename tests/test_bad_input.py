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

import math
import re
import subprocess
import sys
from dataclasses import fields

import pytest
import torch

from gan_lightning.trainer.checkpoints import AtomicCheckpointIO
from gan_lightning.config import FIELD_TYPES, TrainConfig
from script_harness import RING, ROOT, assert_one_line, fingerprint, run_script, tree


@pytest.fixture(scope="module")
def files(script_files):
    return script_files


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
         "--arch=dcgan differs from the checkpoint's 'mlp'"),
    case("resume-with-another-width", "train", lambda f: ["--resume", str(f.dcgan), "--g_width", "8", *out(f)],
         "--g_width=8 differs from the checkpoint's 4"),
    case("resume-checkpoint-of-another-arch", "train", lambda f: ["--resume", str(f.hybrid), "--max_steps", "7"],
         "do not fit"),
    case("resume-with-a-flag-that-changes-d", "train",
         lambda f: ["--resume", str(f.ring), "--minibatch_discrimination", "true", "--max_steps", "7"],
         "--minibatch_discrimination=True differs from the checkpoint's False"),
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
    case("out-of-range", "probe_discriminator", lambda f: ["--d_iters", "0", *out(f)], "expected an integer in [1, 10,000,000]"),
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

# Class: output paths that cannot be written, or that hold earlier results, in every script that
# writes a folder. The check comes before any work: each case would otherwise train first.
PROBE = ["--dataset", "ring", "--z_dim", "2", "--g_width", "8", "--d_width", "8", "--g_epochs", "1",
         "--d_iters", "2", "--noise_std", "0"]
WRITERS = {  # script: (the flag naming its output folder, the other arguments of a run that would start)
    "train": ("--out_dir", lambda f: RING),
    "probe_discriminator": ("--out_dir", lambda f: PROBE),
    "compare_runs": ("--out", lambda f: ["--runs_dir", str(f.runs), "--metric", "loss/d"]),
    "reproduce_improved_gan": ("--out_dir", lambda f: ["--quick"]),
    "sweep_local": ("--out_dir", lambda f: [str(f.smoke), "--dry_run"]),
    "compare_remedies": ("--out_dir", lambda f: ["--seeds", "0", "--epochs", "1"]),
}
LONG_NAME = "x" * 300
for _script, (_flag, _base) in WRITERS.items():
    CASES += [
        case("output-is-a-file", _script, lambda f, b=_base, fl=_flag: [*b(f), fl, str(f.a_file)],
             "is a file, not a folder"),
        case("output-under-a-file", _script, lambda f, b=_base, fl=_flag: [*b(f), fl, str(f.a_file / "sub")],
             "is a file, not a folder"),
        case("output-name-too-long", _script, lambda f, b=_base, fl=_flag: [*b(f), fl, str(f.scratch / LONG_NAME)],
             "300 bytes long"),
    ]
    # train.py: existing-run-without-resume above; a local sweep writes a new <sweep>-<time> folder each time
    if _script not in ("train", "sweep_local"):
        CASES.append(case("output-holds-results", _script, lambda f, b=_base, fl=_flag: [*b(f), fl, str(f.results)],
                          "already holds results"))
CASES += [
    case("run-name-too-long", "train", lambda f: [*RING, *out(f), "--run_name", LONG_NAME], "300 bytes long"),
    case("output-is-a-file", "probe_discriminator", lambda f: [*PROBE, "--out_dir", str(f.a_file)],
         "is a file, not a folder", process=True),
    case("resume-into-a-run-with-checkpoints", "train",
         lambda f: ["--resume", str(f.ring), "--out_dir", str(f.runs), "--run_name", "dcgan"],
         "that run folder already holds checkpoints"),
]

# Class: non-finite numbers, in every float flag (command line and YAML) and the probe's lists.
FLOAT_FLAGS = [f.name for f in fields(TrainConfig) if FIELD_TYPES[f.name] is float]
CASES += [case(f"{value}-{key}", "train", lambda f, k=key, v=value: [f"--{k}", v, *out(f)],
               f"--{key}: must be a finite number") for key in FLOAT_FLAGS for value in ("nan", "inf")]
CASES += [
    case("nan-noise-std", "probe_discriminator", lambda f: [*PROBE, "--noise_std", "0,nan", *out(f)],
         "expected floats in [0, 1000]"),
    case("inf-noise-std", "probe_discriminator", lambda f: [*PROBE, "--noise_std", "inf", *out(f)],
         "expected floats in [0, 1000]"),
]

# Class: YAML --config values of the wrong structure.
YAML_SAYS = {"mapping-value": "--lr_g: expected float, got a dict", "list-value": "--batch_size: expected int, got a list",
             "date-value": "quote it", "non-string-key": "unknown key 1", "nan-value": "--lr_d: must be a finite number",
             "null-number": "--lr_g: expected float, got None", "top-level-list": "must hold a mapping",
             "binary": "cannot read"}
CASES += [case(f"config-{what}", "train", lambda f, w=what: ["--config", str(f.yaml[w]), *out(f)], says)
          for what, says in YAML_SAYS.items()]
CASES += [case("config-date-value", "train", lambda f: ["--config", str(f.yaml["date-value"]), *out(f)], "quote it",
               process=True)]


@pytest.mark.parametrize("script, argv, says, process", CASES)
def test_bad_input_is_one_line_exit_2_and_no_run_is_touched(files, capsys, script, argv, says, process):
    args = [str(a) for a in argv(files)]
    before = tree(files.root)
    code, stdout, stderr = run_script(script, args, capsys, process)
    assert_one_line(code, stderr, says)
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
