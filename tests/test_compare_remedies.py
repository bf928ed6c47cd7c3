"""scripts/compare_remedies.py end to end on a few G steps: the runs, the probes, the table, reuse of
finished work, and bad input."""

import json

import pytest

from gan_lightning.runs.cli import run_cli
from script_harness import script_main

SMALL = ["--remedies", "none,r1", "--seeds", "0", "--epochs", "1", "--max_steps", "12", "--d_iters", "12",
         "--grad_every", "4", "--grad_batches", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_runs_probes_and_table_and_reuses_finished_work(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert run_cli(script_main("compare_remedies"), [*SMALL, "--out_dir", str(out)]) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["remedy"]: r for r in summary["remedies"]}
    assert list(rows) == ["none", "r1"]
    for r in rows.values():
        assert len(r["fid"]["values"]) == 1 and 0 < r["fid"]["mean"] < 1000 and r["fid"]["std"] == 0
        assert 0 <= r["d_accuracy"]["mean"] <= 1 and 0 <= r["probe_d_accuracy"]["mean"] <= 1
    probe = json.loads((out / "probe-seed0" / "summary.json").read_text())
    assert list(probe["remedies"]) == ["none", "r1"]  # the probe of seed 0's G without a remedy, both arms
    assert probe["settings"]["generators"][0]["source"].endswith("none-seed0/checkpoints/last.ckpt")
    assert rows["r1"]["probe_d_accuracy"]["values"] == [probe["remedies"]["r1"][0]["final_d_accuracy"]]
    table = (out / "results.md").read_text()
    assert "| r1 |" in table and "| none |" in table
    assert (out / "fig_remedies_table.png").stat().st_size > 10_000
    ckpt = out / "runs" / "r1-seed0" / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns, (out / "probe-seed0" / "summary.json").stat().st_mtime_ns
    assert run_cli(script_main("compare_remedies"), [*SMALL, "--out_dir", str(out), "--overwrite"]) == 0
    assert (ckpt.stat().st_mtime_ns, (out / "probe-seed0" / "summary.json").stat().st_mtime_ns) == before
    assert json.loads((out / "summary.json").read_text())["remedies"] == summary["remedies"]


@pytest.mark.parametrize("args, message", [
    (["--remedies", "r1,sn"], "--remedies must include none"),
    (["--remedies", "none,dropout"], "--remedies: expected names of none, noise, r1, roth, sn, wgan_gp"),
    (["--seeds", "a"], "--seeds: expected a comma-separated list of seeds"),
    (["--epochs", "0"], "--epochs: expected an integer in [1, 10,000,000]"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert run_cli(script_main("compare_remedies"), [*args, "--out_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_table_figure_draws_d_accuracy_as_dots_and_redraws_from_summary_json(tmp_path):
    import shutil
    from pathlib import Path

    from gan_lightning.experiments.remedies import draw_table, redraw

    docs = Path(__file__).resolve().parents[1] / "docs" / "remedies"
    rows = json.loads((docs / "summary.json").read_text())["remedies"]
    fig = draw_table(rows)
    acc = next(ax for ax in fig.axes if ax.get_title().startswith("training D's final accuracy"))
    assert not acc.patches, "no bars: a bar's length from a cut axis exaggerates the differences"
    seeds = [line for line in acc.get_lines() if line.get_marker() == "o"]
    assert sum(len(line.get_ydata()) for line in seeds) == sum(len(r["d_accuracy"]["values"]) for r in rows)
    low, high = acc.get_ylim()
    assert low <= 0.5 and high >= 1.0  # chance to perfect
    fid = next(ax for ax in fig.axes if ax.get_title().startswith("FID"))
    assert fid.patches and fid.get_ylim()[0] == 0  # bars only where the axis starts at 0
    shutil.copy(docs / "summary.json", tmp_path / "summary.json")
    assert redraw(tmp_path).stat().st_size > 10_000
