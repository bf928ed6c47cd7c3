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
    curves, metric = compare.local_curves(runs_dir)
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
    curves, _ = compare.local_curves(runs_dir)
    curve = next(c for c in curves if c.group == "wasserstein-noise_none")  # n_critic 5: still one G step a batch
    assert curve.steps == [100.0, 200.0, 300.0] and curve.values == [90.0, 70.0, 80.0]


def test_script_writes_the_png_and_the_table(runs_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli(_script().main, ["--runs_dir", str(runs_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    png, md = out / "fid_lenet_5k.png", out / "fid_lenet_5k.md"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert md.read_text().strip() == printed.strip()
    rows = {line.split("|")[1].strip(): line for line in printed.splitlines()[2:]}
    assert rows["minimax-noise_none"].split("|")[3:6] == [" 0, 1, 2 ", " 30 ± 10 ", " 26.33 ± 9.1 "]
    assert rows["wasserstein-noise_none"].split("|")[4:6] == [" 80 ", " 70 "]


def test_a_maximized_metric_takes_the_best_as_the_maximum(tmp_path):
    for seed, values in enumerate([[3.0, 8.0, 6.0], [5.0, 7.0, 7.0]]):
        _write_run(tmp_path / f"ring-{seed}", {"dataset": "ring", "seed": seed}, values, metric="modes_covered/2.5k")
    curves, metric = compare.local_curves(tmp_path, "modes_covered/2.5k")
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
    curves, _ = compare.local_curves(tmp_path, group_by=["g_objective", "minibatch_discrimination"])
    stats = {s.group: s for s in compare.group_stats(curves)}
    assert set(stats) == {"g_objective=adversarial,minibatch_discrimination=False",
                          "g_objective=adversarial,minibatch_discrimination=True",
                          "g_objective=feature_matching,minibatch_discrimination=False"}
    assert stats["g_objective=adversarial,minibatch_discrimination=True"].final_mean == 20.5
    assert {c.group for c in compare.local_curves(tmp_path)[0]} == {"nonsaturating-noise_none"}
    with pytest.raises(compare.UsageError, match="--group_by: 'g_objectiv' is not a config key"):
        compare.local_curves(tmp_path, group_by=["g_objectiv"])


def test_a_logged_g_step_count_is_preferred_to_the_logging_step(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(TrainConfig().to_dict()))
    (folder / "metrics.csv").write_text("step,progress/g_steps,fid/lenet_5k\n9,7,50.0\n19,15,40.0\n")
    (curve,), _ = compare.local_curves(tmp_path)
    assert curve.steps == [7.0, 15.0] and curve.values == [50.0, 40.0]
