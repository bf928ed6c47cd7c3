"""Stability verdicts on real short CPU runs made to produce them: each verdict fires on its run
and not on the others, at the end of training (diagnosis.md/png, one console line) and through
scripts/diagnose.py (run folder, W&B run, bad input)."""

import csv
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from gan_lightning.core import losses
from gan_lightning.diagnostics import verdicts as V
from gan_lightning.diagnostics.diagnosis import read_rows
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

ROOT = Path(__file__).resolve().parents[1]
RING = ["--dataset", "ring", "--batch_size", "64", "--log_every_n_steps", "10", "--shadow_every_n_steps", "10",
        "--metric_num_samples", "1000", "--sample_every_n_epochs", "0", "--g_width", "32", "--d_width", "32"]
NO_METRICS = ["--metric_every_n_epochs", "0"]


def train(out: Path, name: str, *flags: str) -> Path:
    assert run_cli(main, [*RING, *flags, "--out_dir", str(out), "--run_name", name]) == 0
    return out / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> run folder of each short run (about 90 s of CPU in all)."""
    out = tmp_path_factory.mktemp("diagnose")
    made = {
        # a strong D against an (almost) frozen G under the minimax cost: D saturates, G's gradient vanishes
        "saturated": train(out, "saturated", *NO_METRICS, "--loss", "minimax", "--lr_d", "0.002", "--lr_g", "1e-6",
                           "--n_critic", "5", "--max_steps", "200", "--max_epochs", "-1"),
        # the plain GAN on the ring: G hops between modes and loses them again
        "collapse": train(out, "collapse", "--g_width", "64", "--d_width", "64", "--lr_g", "0.001", "--lr_d", "0.001",
                          "--metric_every_n_epochs", "1", "--max_epochs", "12"),
        # learning rates of 5: the losses blow up
        "diverged": train(out, "diverged", *NO_METRICS, "--lr_g", "5", "--lr_d", "5", "--max_steps", "200",
                          "--max_epochs", "-1"),
        # remedies: WGAN-GP, and the minimax cost with instance noise annealed to 0
        "wgan_gp": train(out, "wgan_gp", "--loss", "wasserstein_gp", "--metric_every_n_epochs", "1", "--max_epochs", "3"),
        "noise": train(out, "noise", "--loss", "minimax", "--noise_schedule", "linear", "--noise_std", "1.0",
                       "--noise_final_std", "0", "--noise_anneal_steps", "450", "--metric_every_n_epochs", "1",
                       "--max_epochs", "3"),
    }
    # Arjovsky & Bottou's protocol in one run: G trains for 500 steps, then stays (lr 1e-9) while a
    # strong D trains 10 times per step: G's -log D gradient grows (Thm 2.6)
    train(out, "unstable", *NO_METRICS, "--lr_g", "0.001", "--lr_d", "0.001", "--max_steps", "500", "--max_epochs", "-1")
    assert run_cli(main, ["--out_dir", str(out), "--run_name", "unstable", "--resume", "last", "--lr_g", "1e-9",
                          "--lr_d", "0.002", "--n_critic", "10", "--max_steps", "1200"]) == 0
    made["unstable"] = out / "unstable"
    return made


EXPECTED = {"saturated": {"d_saturation", "vanishing_gradient"}, "collapse": {"mode_collapse"},
            "diverged": {"divergence"}, "unstable": {"unstable_gradient"}, "wgan_gp": {"healthy"},
            "noise": {"healthy"}}


def verdict_names(run: Path) -> set[str]:
    from gan_lightning.runs.diagnosis import local_run, num_modes

    config, rows = local_run(run)
    return {v.name for v in V.diagnose(rows, num_modes=num_modes(config))}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_verdict_fires_on_the_run_made_for_it_and_no_other(runs, name):
    found = verdict_names(runs[name])
    assert EXPECTED[name] <= found, (name, found)
    others = set().union(*(v for k, v in EXPECTED.items() if k != name)) - {"healthy"}
    for verdict in others - EXPECTED[name]:  # the other instabilities do not show here
        if not (name == "diverged" and verdict in ("vanishing_gradient", "mode_collapse")):  # a blow-up has those too
            assert verdict not in found, (name, found)


def test_the_end_of_a_run_writes_its_diagnosis(runs):
    run = runs["saturated"]
    text = (run / "diagnosis.md").read_text()
    # G trains on the minimax cost: its vanishing gradient is a problem; the saturation cannot be graded
    # without a quality metric, and the diagnosis says which evidence was missing
    assert "**Verdict: vanishing_gradient (ungraded: d_saturation)**" in text
    assert "cannot tell whether it hurt: no quality metric was logged" in text
    assert "`--loss nonsaturating`" in text and "Thm 2.4" in text  # what to try, and why
    assert (run / "diagnosis.png").stat().st_size > 10_000
    # the evidence names values the run logged: the minimax norm's peak and the G step it was at
    rows = read_rows(run)
    peak_x, peak = max(V.series(rows, "grad_norm/g_minimax"), key=lambda p: p[1])
    assert f"fell from {peak:.3g} (G step {int(peak_x)})" in text


def test_the_resumed_session_diagnoses_the_whole_run(runs):
    text = (runs["unstable"] / "diagnosis.md").read_text()
    assert "unstable_gradient" in text and "-1200)" in text  # the second session's rows included


def test_diagnose_script_gives_the_verdict_of_the_run_folder(runs, tmp_path):
    out = tmp_path / "again"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "diagnose.py"), str(runs["collapse"]), "--out",
                           str(out)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "**Verdict: mode_collapse**" in proc.stdout
    assert (out / "diagnosis.md").read_text() == (runs["collapse"] / "diagnosis.md").read_text()
    assert (out / "diagnosis.png").is_file()


def test_a_run_stopped_by_a_non_finite_loss_is_diagnosed_as_diverged(tmp_path, monkeypatch, capsys):
    class NaNAfter:
        calls = 0

        def __call__(self, real_logits, fake_logits):
            self.calls += 1
            loss = losses.d_bce_loss(real_logits, fake_logits)
            return loss * math.nan if self.calls > 25 else loss

    monkeypatch.setitem(losses.LOSSES, "nonsaturating", losses.LossPair(NaNAfter(), losses.g_nonsaturating_loss, "t"))
    assert run_cli(main, [*RING, *NO_METRICS, "--max_steps", "60", "--out_dir", str(tmp_path), "--run_name", "nan"]) == 3
    text = (tmp_path / "nan" / "diagnosis.md").read_text()
    assert "**Verdict: divergence**" in text and "the run stopped: non-finite D loss" in text
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("diagnosis: divergence") and err[-1].startswith("diverged: ")  # the error line last


def test_wandb_summary_gets_the_verdict(tmp_path, monkeypatch):
    from wandb.sdk import wandb_summary

    written = {}
    update = wandb_summary.Summary.update

    def spy(self, values=None):
        written.update(values or {})
        return update(self, values)

    monkeypatch.setattr(wandb_summary.Summary, "update", spy)
    assert run_cli(main, [*RING, *NO_METRICS, "--max_steps", "30", "--logger", "wandb", "--out_dir", str(tmp_path),
                          "--run_name", "w"]) == 0
    assert written["diagnosis/verdict"] == "healthy"
    assert {k for k in written if k.startswith("diagnosis/")} == {"diagnosis/verdict", "diagnosis/notes",
                                                                  *(f"diagnosis/{n}" for n in V.NAMES)}


def test_compare_runs_has_a_verdict_column(runs, tmp_path):
    from gan_lightning.experiments import compare

    selection = compare.local_curves(runs["collapse"].parent, "modes_covered/1k")
    curves, metric = selection.curves, selection.metric
    table = compare.markdown_table(compare.group_stats(curves, "maximize"), metric, "maximize")
    assert table.splitlines()[0].endswith("| verdicts |")
    # the 3-epoch WGAN-GP and annealed-noise runs cover none of the 8 modes yet: not learned, not healthy
    assert "mode_collapse x1" in table and table.count("not_learned x1") == 2


def test_wandb_run_is_read_from_its_history(runs, monkeypatch, tmp_path):
    """--wandb reads the run's history through the W&B API (patched here with the rows the run logged)."""
    import wandb

    from gan_lightning.experiments import diagnose
    from gan_lightning.trainer import loggers

    rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in read_rows(runs["saturated"])]

    class Run:
        name, config = "saturated", {"dataset": "ring"}
        summary = {"loss/d": 0.1, "d/acc": 1.0}

        def scan_history(self):
            return iter(rows)

    monkeypatch.setattr(loggers, "wandb_mode", lambda: ("online", ""))
    monkeypatch.setattr(wandb, "Api", lambda: type("Api", (), {"run": lambda self, path: Run()})())
    config, got, name = diagnose.wandb_run("me/proj/abc")
    assert {v.name for v in V.diagnose(got)} == EXPECTED["saturated"]
    assert config == {"dataset": "ring"} and name == "saturated"


def test_unknown_wandb_run_is_one_line(monkeypatch, tmp_path, capsys):
    import wandb

    sys.path.insert(0, str(ROOT / "scripts"))
    import diagnose as script
    from gan_lightning.trainer import loggers

    def no_run(self, path):
        raise ValueError(f"Could not find run <Run {path} (not found)>")

    monkeypatch.setattr(loggers, "wandb_mode", lambda: ("online", ""))
    monkeypatch.setattr(wandb, "Api", lambda: type("Api", (), {"run": no_run})())
    assert run_cli(script.main, ["--wandb", "me/proj/nope", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "me/proj/nope" in err and "Could not find run" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("case", ["missing", "no_metrics", "no_diagnostics", "both", "bad_wandb", "offline"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, case):
    sys.path.insert(0, str(ROOT / "scripts"))
    import diagnose as script

    monkeypatch.setenv("WANDB_MODE", "offline")
    folder = tmp_path / "run"
    folder.mkdir()
    if case == "no_diagnostics":
        with (folder / "metrics.csv").open("w", newline="") as f:
            csv.writer(f).writerows([["epoch", "loss/d", "loss/g", "step"], [0, 1.3, 0.7, 9]])
    argv = {"missing": [str(tmp_path / "nothing")], "no_metrics": [str(folder)], "no_diagnostics": [str(folder)],
            "both": [str(folder), "--wandb", "a/b/c"], "bad_wandb": ["--wandb", "a/b"],
            "offline": ["--wandb", "a/b/c", "--out", str(tmp_path / "w")]}[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli(script.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# -- the thresholds, on rows built around them ----------------------------------------------------
def rows_of(**columns):
    n = max(len(v) for v in columns.values())
    return [{"progress/g_steps": str(10 * (i + 1)), **{k.replace("__", "/"): (str(v[i]) if i < len(v) else "")
                                                       for k, v in columns.items()}} for i in range(n)]


def test_fid_rising_past_its_best_is_divergence_and_a_dip_is_not():
    assert V.divergence(rows_of(fid__lenet_5k=[80, 40, 30, 46])).name == "divergence"  # 1.53x its best
    assert V.divergence(rows_of(fid__lenet_5k=[80, 40, 30, 44])) is None  # 1.47x


def test_recall_falling_while_precision_holds_is_collapse():
    rows = rows_of(recall__lenet_5k=[0.2, 0.6, 0.35], precision__lenet_5k=[0.5, 0.7, 0.65])
    assert "recall fell from 0.60" in V.mode_collapse(rows).evidence
    held_lower = rows_of(recall__lenet_5k=[0.2, 0.6, 0.35], precision__lenet_5k=[0.5, 0.7, 0.55])
    assert V.mode_collapse(held_lower) is None  # precision fell too: worse samples, not fewer modes
    # precision is read against its value at recall's best, not against an early spike before it
    early_spike = rows_of(recall__lenet_5k=[0.01, 0.45, 0.05], precision__lenet_5k=[0.89, 0.49, 0.61])
    assert "precision held (0.49 -> 0.61)" in V.mode_collapse(early_spike).evidence


def test_saturation_needs_a_sustained_window():
    five = rows_of(d__acc=[0.5] + [1.0] * 5, d__jsd_estimate=[0.1] + [0.69] * 5)
    four = rows_of(d__acc=[0.5] + [1.0] * 4 + [0.9], d__jsd_estimate=[0.1] + [0.69] * 5)
    assert V.d_saturation(five).ranges == [(20.0, 60.0)]
    assert V.d_saturation(four) is None


def test_summary_values_name_every_verdict():
    from gan_lightning.diagnostics.diagnosis import summary_values

    values = summary_values([V.HEALTHY])
    assert values["diagnosis/verdict"] == "healthy"
    assert {k for k, v in values.items() if k not in ("diagnosis/verdict", "diagnosis/notes")} == {
        f"diagnosis/{n}" for n in V.NAMES}
    assert not any(v for k, v in values.items() if k != "diagnosis/verdict")
    assert json.dumps(values)  # plain values, as a W&B summary takes them


# -- diagnosis.png, on rows built for each panel ------------------------------------------------
def panel_axes(fig):
    """title -> axes of a diagnosis figure (the panels, not the legend's)."""
    return {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}


def test_fid_and_the_fractions_get_their_own_axes():
    from gan_lightning.diagnostics.diagnosis import draw

    rows = rows_of(d__acc=[0.6, 0.8, 0.9], fid__lenet_5k=[180, 120, 90], precision__lenet_5k=[0.1, 0.3, 0.5],
                   recall__lenet_5k=[0.0, 0.0, 0.0])
    axes = panel_axes(draw(rows, [V.HEALTHY], "r"))
    fid = next(ax for title, ax in axes.items() if title.startswith("FID"))
    fractions = next(ax for title, ax in axes.items() if title.startswith("precision, recall"))
    assert [line.get_label() for line in fid.get_lines()] == ["fid/lenet_5k"]
    assert [line.get_label() for line in fractions.get_lines()] == ["precision/lenet_5k", "recall/lenet_5k"]
    assert fractions.get_ylim() == (0.0, 1.0)  # recall 0 throughout is a value, drawn on the axis
    assert fid.get_ylabel() == "FID" and fractions.get_ylabel() == "fraction"


@pytest.mark.parametrize("num_modes, top", [(8, 8.0), (25, 25.0), (None, 3.0)])
def test_modes_covered_axis_runs_from_0_to_the_modes_of_the_data(num_modes, top):
    from gan_lightning.diagnostics.diagnosis import draw

    rows = rows_of(d__acc=[0.5, 0.7], modes_covered__2_5k=["", 3])  # one metric point, as after one epoch
    rows = [{k.replace("2_5k", "2.5k"): v for k, v in r.items()} for r in rows]
    ax = next(ax for t, ax in panel_axes(draw(rows, [V.HEALTHY], "ring", num_modes=num_modes)).items()
              if t.startswith("modes covered"))
    assert ax.get_ylim() == (0.0, top)
    assert ax.get_ylabel() == (f"modes covered (of {num_modes})" if num_modes else "modes covered")


def test_a_negative_jsd_estimate_is_explained_and_a_blow_up_is_clipped():
    from gan_lightning.diagnostics.diagnosis import JSD_FLOOR, draw

    rows = rows_of(d__acc=[0.5, 0.6, 0.9], d__jsd_estimate=[-0.3, -1.2e8, 0.4])
    ax = next(ax for t, ax in panel_axes(draw(rows, [V.HEALTHY], "r")).items() if t.startswith("D accuracy"))
    assert "< 0 while D is worse than chance" in ax.get_title(loc="left")
    low, high = ax.get_ylim()
    assert JSD_FLOOR - 0.1 <= low < JSD_FLOOR and high <= 1.1  # -1.2e8 does not flatten D's accuracy
    assert any("1.2e+08" in t.get_text() and "1 of 3 points" in t.get_text() for t in ax.texts)


def test_a_diverged_runs_figure_draws_without_a_warning(tmp_path, capsys, caplog):
    from gan_lightning.diagnostics.diagnosis import write_diagnosis

    nan = float("nan")
    rows = rows_of(loss__d=[nan, nan, nan], loss__g=[nan, nan, nan], d__acc=[0.5, nan, nan],
                   d__jsd_estimate=[-5e7, nan, nan], grad_norm__g_minimax=[0.0, nan, 0.0],
                   grad_norm__g_nonsaturating=[nan, nan, nan], fid__lenet_5k=[nan, nan, nan])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_diagnosis(rows, tmp_path, "diverged")
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr() == ("", "") and not caplog.records
    assert (tmp_path / "diagnosis.png").stat().st_size > 10_000


@pytest.mark.parametrize("case, says", [
    ("binary", "run: metrics.csv is not a CSV text file; byte 0x"),
    ("a_file", "notes.txt is a file, not a run folder"),
    ("metrics_csv", "metrics.csv is a file, not a run folder; pass its run folder {run}"),
    ("ckpt", "last.ckpt is a file, not a run folder; pass its run folder {run}"),
])
def test_a_broken_metrics_csv_or_a_file_is_one_line(tmp_path, capsys, case, says):
    """3 kB of random bytes as metrics.csv, or a file where the run folder goes: one line, exit 2, nothing written."""
    import random

    sys.path.insert(0, str(ROOT / "scripts"))
    import diagnose as script

    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "metrics.csv").write_bytes(random.Random(0).randbytes(3000))
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"not read")
    (tmp_path / "notes.txt").write_text("a file\n")
    arg = {"binary": folder, "a_file": tmp_path / "notes.txt", "metrics_csv": folder / "metrics.csv",
           "ckpt": folder / "checkpoints" / "last.ckpt"}[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_cli(script.main, [str(arg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says.format(run=folder) in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
