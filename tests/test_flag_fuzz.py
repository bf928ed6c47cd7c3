"""Property test: malformed values in every flag of every script never end in a traceback.

For each script, the flags are read from its own ``--help``; each flag gets each malformed value
of ``MALFORMED`` (wrong types and structures, NaN and infinities, negative, huge, empty, a path
that is a file, an over-long name) on top of a cheap valid command. Whatever the value, the
script exits 0 (accepted), 2 (refused) or 3 (diverged). Refused, it prints exactly one line on
stderr and changes no file, neither of the fixture runs nor in its working folder; diverged, its
last line says so. The fixture runs never change. Scripts whose
accepted runs would take minutes (the reproduction, the extractor training) run with their
training replaced by a stub: what is tested is everything around it.
"""

from __future__ import annotations

import re

import pytest

from script_harness import SCRIPTS, assert_one_line, run_script, script_main, script_module, tree

MALFORMED = {
    "wrong-type": "abc",
    "list": "[1, 2]",
    "mapping": "{a: 1}",
    "nan": "nan",
    "inf": "-inf",
    "negative": "-1",
    "huge-int": "99999999999999999999",
    "huge-float": "1e308",
    "empty": "",
    "a-file": "<a_file>",
    "long-name": "x" * 300,
}
TINY_RING = ["--dataset", "ring", "--z_dim", "2", "--g_width", "8", "--d_width", "8", "--batch_size", "256",
             "--logger", "none", "--metric_every_n_epochs", "0", "--diagnostics", "false", "--max_epochs", "1"]
BASE = {  # a cheap valid command of each script; the fuzzed flag comes after it and wins
    "train": lambda f: [*TINY_RING, "--max_steps", "2", "--out_dir", "out"],
    "evaluate": lambda f: [str(f.ring), "--num_samples", "200"],
    "probe_discriminator": lambda f: [*TINY_RING, "--g_epochs", "1", "--d_iters", "2", "--noise_std", "0",
                                      "--grad_batches", "1", "--out_dir", "out"],
    "sweep_local": lambda f: [str(f.smoke), "--dry_run", "--out_dir", "out"],
    "compare_runs": lambda f: ["--runs_dir", str(f.runs), "--metric", "loss/d", "--out", "out"],
    "reproduce_improved_gan": lambda f: ["--out_dir", "out"],
    "train_feature_extractor": lambda f: ["--out", "out/lenet.pt", "--epochs", "1"],
    "compare_remedies": lambda f: ["--out_dir", "out"],
}


def script_flags(script: str) -> list[str]:
    """The flags a script's ``--help`` lists (``-h``/``--help`` itself left out)."""
    from contextlib import redirect_stdout
    from io import StringIO

    text = StringIO()
    with redirect_stdout(text), pytest.raises(SystemExit):
        script_main(script)(["--help"])
    return sorted(set(re.findall(r"^\s+(--\w+)", text.getvalue(), re.M)) - {"--help"})


@pytest.fixture
def stubbed(monkeypatch):
    """Replace the minutes-long work of the reproductions and of the extractor training by stubs."""
    import gan_lightning.experiments.reproduce as reproduce
    import gan_lightning.experiments.reproduce_report as report

    for name in reproduce.STUDIES:
        monkeypatch.setitem(reproduce.STUDIES, name, lambda settings, out_dir, say: {})

    def write_outputs(summary, settings, out_dir, seconds):
        (out_dir / "results.md").write_text("stub\n")
        return [out_dir / "results.md"]

    monkeypatch.setattr(report, "write_outputs", write_outputs)
    import gan_lightning.experiments.remedies as remedies

    monkeypatch.setattr(remedies, "train_all", lambda settings, out_dir, say: {})
    monkeypatch.setattr(remedies, "probe_all", lambda settings, runs, out_dir, say: {})
    monkeypatch.setattr(remedies, "summarize", lambda settings, runs, probes: [])
    monkeypatch.setattr(remedies, "write_outputs",
                        lambda out_dir, settings, rows, seconds: write_outputs(rows, settings, out_dir, seconds))
    module = script_module("train_feature_extractor")
    from gan_lightning.metrics.lenet import LeNetMNIST

    monkeypatch.setattr(module, "train", lambda *args, **kwargs: LeNetMNIST().eval())


CASES = [(script, flag, kind) for script in SCRIPTS for flag in script_flags(script) for kind in MALFORMED]


def test_the_fuzzer_covers_every_script_and_many_flags():
    per_script = {s: len(script_flags(s)) for s in SCRIPTS}
    assert per_script["train"] >= 70 and all(n >= 3 for n in per_script.values()), per_script
    assert len(CASES) == sum(per_script.values()) * len(MALFORMED)


@pytest.mark.timeout(120)  # a value that makes a script loop for hours is a failure, not a stuck suite
@pytest.mark.parametrize("script, flag, kind", CASES)
def test_malformed_flag_values_exit_0_2_or_3_with_one_line(script_files, stubbed, tmp_path, monkeypatch, capsys,
                                                            script, flag, kind):
    monkeypatch.chdir(tmp_path)  # relative paths an accepted value names land here
    value = str(script_files.a_file) if MALFORMED[kind] == "<a_file>" else MALFORMED[kind]
    fixture_before, here_before = tree(script_files.root), tree(tmp_path)
    code, _, stderr = run_script(script, [*BASE[script](script_files), flag, value], capsys)
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code in (0, 2, 3), stderr[-3000:]
    if code == 2:  # refused: one line, nothing written
        assert_one_line(code, stderr, exit_code=code)
        assert tree(tmp_path) == here_before
    if code == 3:  # a run that started and diverged (e.g. --lr_g 1e308): its last line says so, once
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("diverged: ") and sum(line.startswith(("error:", "diverged:")) for line in lines) == 1
    assert tree(script_files.root) == fixture_before
