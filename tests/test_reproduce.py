"""scripts/reproduce_improved_gan.py's studies on tiny settings: the summary has the issue's keys."""

import json
import math
from pathlib import Path

import pytest

from gan_lightning.experiments.reproduce import STUDIES, Settings
from gan_lightning.experiments.reproduce_report import SUMMARY_KEYS, write_outputs

TINY = Settings(ssl_epochs=1, ssl_seeds=(0,), labels_per_class=2, coverage_steps=3, coverage_seeds=(0,),
                ablation_epochs=1, ablation_samples=500, ablation_variants=("baseline", "full recipe"),
                extra=("--accelerator", "cpu", "--logger", "csv", "--diagnostics", "false"))


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    result = {name: study(TINY, out / "runs", lambda m: None) for name, study in STUDIES.items()}
    return out, result


def test_summary_json_has_the_issue_keys_and_figures(summary):
    out, result = summary
    written = write_outputs(result, {"quick": True}, out, 1.0)
    data = json.loads((out / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(data)
    ssl = data["semi_supervised"]
    assert {"dataset", "labels", "test_size", "test_error", "supervised_only_error", "seeds"} <= set(ssl)
    assert ssl["labels"] == 20 and ssl["test_size"] == 1000 and ssl["seeds"] == [0]
    assert 0 <= ssl["test_error"] <= 1 and 0 <= ssl["supervised_only_error"] <= 1
    assert ssl["gain_per_seed"] == [ssl["supervised_only_per_seed"][0] - ssl["test_error_per_seed"][0]]
    assert len(ssl["d_loss_max_after_50_steps_per_seed"]) == 1 and "--adam_eps 1e-4" in ssl["flags"]
    assert len(ssl["d_loss_max_per_epoch"]["0"]) == 1  # TINY: one epoch
    for dataset in ("ring", "grid"):
        for variant in ("baseline", "minibatch_discrimination"):
            r = data["mode_coverage"][dataset][variant]
            assert 0 <= r["modes"] <= {"ring": 8, "grid": 25}[dataset] and 0 <= r["high_quality"] <= 1
            assert r["modes_per_seed"] == [r["modes"]] and r["seeds"] == [0] and r["g_steps"] == 3
            assert r["curves"]["0"]["step"][-1] == 3 and r["curves"]["0"]["modes"][-1] == r["modes"]
            assert ("--minibatch_discrimination" in r["flags"]) == (variant != "baseline")
    rows = data["ablation"]
    assert [r["techniques"] for r in rows] == ["baseline", "full recipe"]
    assert all(r["fid"] > 0 and not math.isnan(r["is_mean"]) for r in rows)
    full = rows[1]
    for flag in ("--minibatch_discrimination", "--g_norm vbn", "--label_smoothing", "--historical_averaging"):
        assert flag in full["flags"]
    assert "feature_matching" not in full["flags"]  # the semi-supervised objective has its own row
    assert full["fid_per_seed"] == [full["fid"]] and full["fid_curves"]["0"]["value"][-1] == full["fid"]
    assert len(full["d_acc_last_epoch_per_seed"]) == 1  # nan here: TINY turns --diagnostics off
    table = (out / "results.md").read_text()
    assert "| K+1 GAN (feature matching) |" in table and "| full recipe |" in table
    assert {p.name for p in written} >= {"fig_semi_supervised.png", "fig_mode_coverage.png", "fig_ablation.png"}
    assert all(p.stat().st_size > 0 for p in written)


def test_finished_runs_are_reused(summary):
    """Started again, the reproduction does not retrain what finished (it reads the same numbers)."""
    out, result = summary
    run = out / "runs" / "ring-baseline-seed0" / "checkpoints" / "last.ckpt"
    before = run.stat().st_mtime_ns
    again = STUDIES["mode_coverage"](TINY, out / "runs", lambda m: None)
    assert run.stat().st_mtime_ns == before
    assert again["ring"]["baseline"]["modes"] == result["mode_coverage"]["ring"]["baseline"]["modes"]


def test_bad_study_name_is_one_line(capsys, tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.chdir(tmp_path)  # the default --out_dir is relative: not this checkout's runs/

    spec = importlib.util.spec_from_file_location(
        "reproduce_improved_gan", Path(__file__).parents[1] / "scripts" / "reproduce_improved_gan.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from gan_lightning.runs.cli import run_cli

    assert run_cli(script.main, ["--only", "table3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "semi_supervised, mode_coverage, ablation" in err


def test_a_preempted_run_stops_the_reproduction_and_is_not_marked_done(tmp_path, monkeypatch):
    """SIGTERM during a run (train() returns preempted) must not let the next run start."""
    import gan_lightning.runs.training as training
    from gan_lightning.experiments.reproduce import train_run

    def preempted(cfg, given):
        run_dir = tmp_path / cfg.run_name
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"saved at SIGTERM")
        return training.Run(cfg, run_dir, None, preempted=True)

    monkeypatch.setattr(training, "train", preempted)
    with pytest.raises(KeyboardInterrupt):
        train_run(["--dataset", "ring"], tmp_path, "r")
    assert not (tmp_path / "r" / "done").exists()


def test_run_jobs_runs_calls_in_processes_and_stops_at_the_first_failure(tmp_path):
    from gan_lightning.experiments.reproduce import run_jobs

    said = []
    run_jobs([(Path.touch, (tmp_path / f"run{i}",)) for i in range(3)], 2, said.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0", "run1", "run2"]
    assert said[0] == "3 runs, 2 at a time"
    assert [m[:6] for m in said[1:]] == ["[1/3] ", "[2/3] ", "[3/3] "]  # reported as each finishes
    assert sorted(m.split()[-1] for m in said[1:]) == ["run0", "run1", "run2"]
    with pytest.raises(FileNotFoundError):  # a run's error reaches the caller
        run_jobs([(Path.mkdir, (tmp_path / "missing" / "parent",)), (Path.touch, (tmp_path / "other",))], 2,
                 said.append)
    run_jobs([(Path.touch, (tmp_path / "serial",))], 1, said.append)  # one at a time: in this process
    assert (tmp_path / "serial").is_file() and said[-1] == "[1/1] serial"


def test_a_mean_over_fewer_seeds_says_so():
    from gan_lightning.experiments.reproduce import mean_std
    from gan_lightning.experiments.reproduce_report import _pm

    per_seed = [10.0, float("nan"), 14.0]
    mean, std = mean_std(per_seed)
    assert mean == 12.0
    assert _pm(mean, std, per_seed=per_seed).endswith("(2 of 3 seeds)")
    assert "seeds" not in _pm(*mean_std([10.0, 14.0]), per_seed=[10.0, 14.0])
