"""compare_runs: FID curves and per-group final/best tables from fabricated run folders."""

import csv
import importlib.util
import math
from pathlib import Path

import pytest
import yaml

from gan_lightning.experiments import compare
from gan_lightning.runs.cli import run_cli
from gan_lightning.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
FID = "fid/lenet_5k"

# group -> (config overrides, {seed: FID values logged at steps 99, 199, 299, ...})
RUNS = {
    "minimax-noise_none": ({"loss": "minimax"}, {0: [50.0, 25.0, 30.0], 1: [45.0, 18.0, 20.0],
                                                 2: [60.0, 36.0, 40.0]}),
    "hinge-noise_linear": ({"loss": "hinge", "noise_std": 0.2, "noise_schedule": "linear"},
                           {0: [70.0, 12.0], 1: [80.0, 16.0]}),
    "wasserstein-noise_none": ({"loss": "wasserstein", "gp_weight": 10.0, "n_critic": 5}, {0: [90.0, 70.0, 80.0]}),
}


def _script():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, config: dict, fids: list[float], metric: str = FID) -> None:
    """A run folder as train.py writes it: config.yaml and a metrics.csv where the metric is sparse."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(TrainConfig(**config).to_dict(), sort_keys=False))
    with (folder / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", metric, "loss/d", "step"])
        for i, fid in enumerate(fids):
            w.writerow([i, "", 1.0, 100 * i + 49])  # a training row: no FID
            w.writerow([i, fid, "", 100 * i + 99])  # the epoch-end evaluation


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    for group, (overrides, seeds) in RUNS.items():
        for seed, fids in seeds.items():
            # Sweep folders nest runs one level deeper; both layouts are read.
            _write_run(root / "sweep-a" / f"{group}-s{seed}", {**overrides, "seed": seed}, fids)
    _write_run(root / "no-fid", {"loss": "hinge"}, [], metric="loss/g")  # logged no FID: left out
    return root


def _stdev(xs):  # sample standard deviation, n - 1
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def test_group_means_and_stds_of_final_and_best_fid(runs_dir):
    selection = compare.local_curves(runs_dir)
    curves, metric = selection.curves, selection.metric
    assert metric == FID and len(curves) == 6
    stats = {s.group: s for s in compare.group_stats(curves, "minimize")}
    assert set(stats) == set(RUNS)
    mm = stats["minimax-noise_none"]
    # final: 30, 20, 40 -> mean 30, std 10; best (min): 25, 18, 36 -> mean 79/3, std by hand
    assert (mm.runs, mm.seeds, mm.final_mean, mm.final_std) == (3, [0, 1, 2], 30.0, 10.0)
    assert mm.best_mean == pytest.approx(79 / 3)
    assert mm.best_std == pytest.approx(math.sqrt(((25 - 79 / 3) ** 2 + (18 - 79 / 3) ** 2 + (36 - 79 / 3) ** 2) / 2))
    hinge = stats["hinge-noise_linear"]
    assert (hinge.final_mean, hinge.final_std) == (14.0, pytest.approx(_stdev([12.0, 16.0])))
    assert hinge.final_std == pytest.approx(2 * math.sqrt(2))
    wgan = stats["wasserstein-noise_none"]
    assert (wgan.runs, wgan.final_mean, wgan.final_std, wgan.best_mean, wgan.best_std) == (1, 80.0, None, 70.0, None)


def test_progress_is_generator_steps_from_the_logging_step(runs_dir):
    curves = compare.local_curves(runs_dir).curves
    curve = next(c for c in curves if c.group == "wasserstein-noise_none")  # n_critic 5: still one G step a batch
    assert curve.steps == [100.0, 200.0, 300.0] and curve.values == [90.0, 70.0, 80.0]


def test_script_writes_the_png_and_the_table(runs_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli(_script().main, ["--runs_dir", str(runs_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    png, md = out / "fid_lenet_5k.png", out / "fid_lenet_5k.md"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert md.read_text().strip() == printed.strip()
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines()[2:] if line.startswith("|")}
    assert rows["minimax-noise_none"].split("|")[3:6] == [" 0, 1, 2 ", " 30 ± 10 ", " 26.33 ± 9.1 "]
    assert rows["wasserstein-noise_none"].split("|")[4:6] == [" 80 ", " 70 "]


def test_a_maximized_metric_takes_the_best_as_the_maximum(tmp_path):
    for seed, values in enumerate([[3.0, 8.0, 6.0], [5.0, 7.0, 7.0]]):
        _write_run(tmp_path / f"ring-{seed}", {"dataset": "ring", "seed": seed}, values, metric="modes_covered/2.5k")
    selection = compare.local_curves(tmp_path, "modes_covered/2.5k")
    curves, metric = selection.curves, selection.metric
    goal = compare.goal_of(metric)
    (stats,) = compare.group_stats(curves, goal)
    assert goal == "maximize" and stats.best_mean == 7.5 and stats.final_mean == 6.5
    assert "best (max)" in compare.markdown_table([stats], metric, goal)


@pytest.mark.parametrize("argv, why", [
    (["--runs_dir", "{tmp}/missing"], "--runs_dir: no such folder"),
    (["--runs_dir", "{tmp}/empty"], "no run folders"),
    (["--runs_dir", "{runs}", "--metric", "fid/inception_50k"], "no run under"),
    (["--runs_dir", "{runs}", "--project", "me/gans"], "give --runs_dir or --project, not both"),
    (["--project", "me/gans", "--filters", "{{nope"], "--filters: not valid JSON"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_is_one_line_and_exit_2(runs_dir, tmp_path, capsys, argv, why):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, runs=runs_dir) for a in argv]
    assert run_cli(_script().main, argv) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1, err


def test_group_by_config_keys_splits_an_ablation(tmp_path):
    # improved_techniques.yaml: every run is nonsaturating-noise_none, so its W&B group cannot tell
    # the techniques apart; --group_by can.
    for i, (fm, mbd) in enumerate([("adversarial", False), ("adversarial", True), ("feature_matching", False)]):
        for seed in (0, 1):
            _write_run(tmp_path / f"r{i}-{seed}", {"g_objective": fm, "minibatch_discrimination": mbd, "seed": seed},
                       [10.0 * (i + 1) + seed])
    curves = compare.local_curves(tmp_path, group_by=["g_objective", "minibatch_discrimination"]).curves
    stats = {s.group: s for s in compare.group_stats(curves)}
    assert set(stats) == {"g_objective=adversarial,minibatch_discrimination=False",
                          "g_objective=adversarial,minibatch_discrimination=True",
                          "g_objective=feature_matching,minibatch_discrimination=False"}
    assert stats["g_objective=adversarial,minibatch_discrimination=True"].final_mean == 20.5
    assert {c.group for c in compare.local_curves(tmp_path).curves} == {"nonsaturating-noise_none"}
    with pytest.raises(compare.UsageError, match="--group_by: 'g_objectiv' is not a config key"):
        compare.local_curves(tmp_path, group_by=["g_objectiv"])


def test_a_logged_g_step_count_is_preferred_to_the_logging_step(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (folder / "metrics.csv").write_text("step,progress/g_steps,fid/lenet_5k\n9,7,50.0\n19,15,40.0\n")
    (curve,) = compare.local_curves(tmp_path).curves
    assert curve.steps == [7.0, 15.0] and curve.values == [50.0, 40.0]


# -- what a comparison leaves out, and says so ---------------------------------------------------
# 9 runs as a mixed folder holds them: image runs at three sample counts, with and without --g_ema,
# and ring runs (no FID at all)
MIXED = {"a5k-0": ["fid/lenet_5k"], "a5k-1": ["fid/lenet_5k"],
         "b2k-0": ["fid/lenet_2k"], "b2k-1": ["fid/lenet_2k"],
         "c2k_ema-0": ["fid/lenet_2k_ema"],
         "d1k_ema-0": ["fid/lenet_1k_ema"], "d1k_ema-1": ["fid/lenet_1k_ema"], "d1k_ema-2": ["fid/lenet_1k_ema"],
         "ring-0": ["modes_covered/2.5k", "high_quality/2.5k"]}


def _write_keys(folder: Path, keys: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(TrainConfig(seed=seed).to_dict(), sort_keys=False))
    (folder / "metrics.csv").write_text(
        "step,loss/d," + ",".join(keys) + "\n" + "".join(f"{s},1.0," + ",".join(f"{50 - s / 10}" for _ in keys) + "\n"
                                                        for s in (99, 199)))


@pytest.fixture
def mixed_dir(tmp_path):
    root = tmp_path / "mixed"
    for name, keys in MIXED.items():
        _write_keys(root / name, keys, int(name[-1]))
    return root


def test_without_metric_the_one_most_runs_log_is_chosen_and_the_rest_are_named(mixed_dir):
    selection = compare.local_curves(mixed_dir)
    assert selection.metric == "fid/lenet_1k_ema" and len(selection.curves) == 3
    assert selection.why == ("fid/lenet_1k_ema, logged by 3 of 9 runs: more than any other metric; "
                             "--metric picks another")
    (line,) = selection.notes()
    assert line == ("left out: 6 runs do not log fid/lenet_1k_ema: a5k-0, a5k-1, b2k-0, b2k-1, c2k_ema-0, ring-0 "
                    "(they log fid/lenet_2k: 2, fid/lenet_5k: 2, fid/lenet_2k_ema: 1, modes_covered/2.5k: 1; "
                    "pass --metric to compare those)")


def test_a_tie_goes_to_fid_then_the_first_name_and_says_so(tmp_path):
    _write_keys(tmp_path / "img", ["fid/lenet_5k_ema", "fid/lenet_5k"])
    _write_keys(tmp_path / "ring", ["modes_covered/2.5k"])
    selection = compare.local_curves(tmp_path)
    assert selection.metric == "fid/lenet_5k"
    assert "tied with fid/lenet_5k_ema, modes_covered/2.5k: FID first, then by name" in selection.why
    assert selection.notes() == ["left out: 1 run does not log fid/lenet_5k: ring (it logs modes_covered/2.5k: 1; "
                                 "pass --metric to compare those)"]


def test_a_given_metric_counts_its_runs(mixed_dir):
    selection = compare.local_curves(mixed_dir, "fid/lenet_5k")
    assert [c.name for c in selection.curves] == ["a5k-0", "a5k-1"]
    assert selection.why == "fid/lenet_5k (--metric), logged by 2 of 9 runs"
    assert selection.notes()[0].startswith("left out: 7 runs do not log fid/lenet_5k: b2k-0, ")


def test_broken_and_half_run_folders_are_left_out_with_the_reason(mixed_dir):
    (mixed_dir / "binary").mkdir()
    (mixed_dir / "binary" / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (mixed_dir / "binary" / "metrics.csv").write_bytes(bytes(range(128, 256)) * 24)  # 3 kB, not UTF-8
    (mixed_dir / "no_config").mkdir()
    (mixed_dir / "no_config" / "metrics.csv").write_text("step,fid/lenet_1k_ema\n9,3.0\n")
    (mixed_dir / "no_csv" / "wandb" / "files").mkdir(parents=True)  # W&B's config.yaml is not a run's
    (mixed_dir / "no_csv" / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (mixed_dir / "no_csv" / "wandb" / "files" / "config.yaml").write_text("wandb_version: 1\n")
    (mixed_dir / "nan").mkdir()
    (mixed_dir / "nan" / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (mixed_dir / "nan" / "metrics.csv").write_text("step,fid/lenet_1k_ema\n9,nan\n19,inf\n")
    notes = compare.local_curves(mixed_dir).notes()
    assert notes[1:] == ["left out: 1 run logged fid/lenet_1k_ema only as NaN or inf: nan",
                         "left out: 1 run has metrics.csv but no config.yaml: no_config",
                         "left out: 1 run has config.yaml but no metrics.csv: no_csv",
                         "left out: 1 run cannot be read: binary (metrics.csv is not a CSV text file; byte 0x80 at "
                         "offset 0 is not UTF-8)"]


def test_the_script_writes_the_left_out_runs_and_counts_them_in_the_title(mixed_dir, tmp_path, capsys, monkeypatch):
    titles = []
    monkeypatch.setattr("matplotlib.axes.Axes.set_title", lambda self, text, *a, **k: titles.append(text))
    (mixed_dir / "binary").mkdir()
    (mixed_dir / "binary" / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (mixed_dir / "binary" / "metrics.csv").write_bytes(bytes(range(128, 256)) * 24)
    out = tmp_path / "report"
    assert run_cli(_script().main, ["--runs_dir", str(mixed_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "fid_lenet_1k_ema.md").read_text()
    assert text.strip() == printed.strip()
    assert "\nmetric: fid/lenet_1k_ema, logged by 3 of 9 runs: more than any other metric" in text  # of the 9 read
    assert "\n- left out: 6 runs do not log fid/lenet_1k_ema: a5k-0, " in text
    assert "\n- left out: 1 run cannot be read: binary (metrics.csv is not a CSV text file" in text
    assert titles == ["fid/lenet_1k_ema, 1 group, 3 runs (7 left out)"]


def test_nothing_left_out_says_so(runs_dir):
    (runs_dir / "no-fid").joinpath("metrics.csv").unlink()
    (runs_dir / "no-fid").joinpath("config.yaml").unlink()
    assert compare.local_curves(runs_dir).notes() == ["left out: none"]
    assert compare.title(FID, 3, 6) == "fid/lenet_5k, 3 groups, 6 runs"


@pytest.mark.parametrize("argv, why", [
    (["--group_by", ""], "--group_by: '' names no config key"),
    (["--group_by", " , "], "--group_by: ' , ' names no config key"),
    (["--metric", ""], "--metric: empty"),
    (["--metric", "fid/lenet_50k"], "no run under {mixed} logged fid/lenet_50k; 9 runs do not log fid/lenet_50k: "),
])
def test_an_empty_flag_or_a_metric_no_run_logs_is_refused(mixed_dir, tmp_path, capsys, argv, why):
    out = tmp_path / "report"
    assert run_cli(_script().main, ["--runs_dir", str(mixed_dir), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and why.format(mixed=mixed_dir) in err and err.count("\n") == 1, err
    assert not out.exists()


def test_only_unreadable_runs_is_one_line(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (tmp_path / "r" / "metrics.csv").write_bytes(b"step,fid\x00\n1,2\n")  # NUL: csv refuses it
    assert run_cli(_script().main, ["--runs_dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run folders" in err and "r (metrics.csv is not a CSV text file" in err, err
