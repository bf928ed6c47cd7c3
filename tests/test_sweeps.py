"""Sweep YAMLs against W&B's schema and train.py's flags; the runs the engine proposes; the local runner."""

import csv
import importlib.util
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import yaml

from gan_lightning.runs.cli import run_cli
from gan_lightning.config import noise_enabled, parse_args
from gan_lightning.trainer.loggers import run_group
from gan_lightning.experiments.sweep_local import LocalRun, run_sweep, run_trial as train_run
from gan_lightning.experiments.sweeps import (COMMAND, PROGRAM, SweepError, load_checked, load_sweep,
                                              run_keys as logged_keys, run_flags, suggest, sweep_problems)
from gan_lightning.runs.training import main as train_main

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def _sweep_params():
    return [pytest.param(path, id=path.stem) for path in SWEEPS]


def _same(resolved, given) -> bool:
    try:
        return float(resolved) == float(given)
    except (TypeError, ValueError):
        return str(resolved).lower() == str(given).lower()


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_issue_sweeps_are_there():
    assert {p.stem for p in SWEEPS} >= {"losses_x_noise", "noise_bayes", "improved_techniques", "semi_supervised",
                                        "smoke"}


@pytest.mark.parametrize("path", _sweep_params())
def test_sweep_is_valid_for_wandb_and_train_py(path):
    import sweeps

    sweep = load_sweep(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sweeps.schema_violations_from_proposed_config(sweep) == []
        sweeps.SweepConfig(sweep)  # W&B's own validation, with its defaults filled in
    assert sweep["program"] == PROGRAM and sweep["command"] == COMMAND
    assert (ROOT / sweep["program"]).is_file()
    assert sweep["metric"]["goal"] == "minimize"
    assert sweep_problems(sweep, str(path)) == []  # every flag, value, range end; metric logged by every run


@pytest.mark.parametrize("path", _sweep_params())
def test_first_runs_of_each_sweep_parse_as_train_py_dry_runs(path, capsys):
    sweep = load_sweep(path)
    runs = suggest(sweep, [], n=3)
    assert len(runs) == 3
    for run in runs:
        flags = run_flags(run.config)
        assert all(f.startswith("--") and "=" in f for f in flags)  # the agent's ${args}: --key=value
        capsys.readouterr()
        assert run_cli(train_main, [*flags, "--dry_run"]) == 0, capsys.readouterr().err
        printed = yaml.safe_load(capsys.readouterr().out)
        for key, spec in run.config.items():  # the config train.py resolved holds the sweep's values
            if key != "loss" or spec["value"] != "wasserstein_gp":  # an alias: see the losses_x_noise test
                assert _same(printed[key], spec["value"]), (key, printed[key], spec["value"])
        assert sweep["metric"]["name"] in logged_keys(parse_args(flags)[0])


def test_the_real_script_takes_the_agents_flags(tmp_path):
    flags = run_flags(suggest(load_sweep(ROOT / "sweeps" / "smoke.yaml"), [], n=1)[0].config)
    proc = subprocess.run([sys.executable, str(ROOT / PROGRAM), *flags, "--dry_run"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["metric_num_samples"] == 1000


def test_losses_x_noise_grid_runs_what_it_says_and_groups_by_loss_and_noise():
    sweep = load_sweep(ROOT / "sweeps" / "losses_x_noise.yaml")
    runs, done = [], []
    while found := suggest(sweep, done):
        found[0].state = "finished"
        done.append(found[0])
        runs.append(parse_args(run_flags(found[0].config))[0])
    assert len(runs) == 5 * 6 * 3
    groups: dict[str, set[int]] = {}
    for cfg in runs:
        groups.setdefault(run_group(cfg), set()).add(cfg.seed)
    assert len(groups) == 5 * 6 and all(seeds == {0, 1, 2} for seeds in groups.values())
    wgan = [c for c in runs if c.loss == "wasserstein"]
    assert len(wgan) == 18 and all(c.gp_weight == 10 and c.n_critic == 5 for c in wgan)
    assert all(c.gp_weight == 0 and c.n_critic == 1 for c in runs if c.loss != "wasserstein")
    off = [c for c in runs if run_group(c).endswith("noise_none")]
    assert len(off) == 15 and not any(noise_enabled(c) for c in off)
    assert all(noise_enabled(c) for c in runs if c not in off)


# -- bad sweep files ----------------------------------------------------------------------------
GOOD = """
program: scripts/train.py
command:
  - ${env}
  - python
  - ${program}
  - ${args}
method: grid
metric: {name: loss/d, goal: minimize}
parameters:
  dataset: {value: ring}
  loss: {values: [hinge, nonsaturating]}
"""


def _write(tmp_path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_sweep_file_passes(tmp_path):
    assert load_checked(_write(tmp_path, GOOD))["method"] == "grid"


@pytest.mark.parametrize("change, key, why", [
    (("loss: {values: [hinge, nonsaturating]}", "los: {values: [hinge, nonsaturating]}"),
     "parameters.los", "not a flag of scripts/train.py; did you mean loss?"),
    (("loss: {values: [hinge, nonsaturating]}", "loss: {values: [hinge, nonsaturated]}"),
     "parameters.loss: value 'nonsaturated'", "--loss: unknown value 'nonsaturated'"),
    (("loss: {values: [hinge, nonsaturating]}", "lr_d: {min: -0.1, max: 0.1}"),
     "parameters.lr_d: value -0.1", "--lr_d: must be > 0"),
    (("loss: {values: [hinge, nonsaturating]}", "n_critic: {distribution: uniform, min: 1, max: 5}"),
     "parameters.n_critic: value 1.0", "--n_critic: expected int"),
    (("loss: {values: [hinge, nonsaturating]}", "run_name: {value: x}"),
     "parameters.run_name", "a sweep must not set it"),
    (("name: loss/d", "name: fid/lenet_5k"), "metric.name", "'fid/lenet_5k' is never logged"),
    (("  - ${args}", "  - --config=x.yaml"), "command", "must be ['${env}', 'python', '${program}', '${args}']"),
    (("program: scripts/train.py", "program: train.py"), "program", "must be scripts/train.py"),
    (("method: grid", "method: hillclimb"), "schema", "hillclimb"),
])
def test_a_bad_sweep_file_names_the_file_the_key_and_why(tmp_path, change, key, why):
    path = _write(tmp_path, GOOD.replace(*change))
    assert GOOD.replace(*change) != GOOD
    with pytest.raises(SweepError) as info:
        load_checked(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}") and why in message, message
    assert "\n" not in message


@pytest.mark.parametrize("text, why", [("method: [grid", "not valid YAML"), ("- a\n- b\n", "must be a mapping")])
def test_unreadable_sweep_files(tmp_path, text, why):
    with pytest.raises(SweepError, match=why):
        load_checked(_write(tmp_path, text))


@pytest.mark.parametrize("argv, why", [
    (["missing.yaml"], "missing.yaml: no such sweep file"),
    (["{sweeps}/smoke.yaml", "--count", "0"], "--count: must be >= 1, got 0"),
    (["{bad}"], "parameters.los: not a flag"),
])
def test_sweep_local_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, why):
    bad = _write(tmp_path, GOOD.replace("loss:", "los:"))
    argv = [a.format(sweeps=ROOT / "sweeps", bad=bad) for a in argv]
    assert run_cli(_script("sweep_local").main, argv) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1, err


# -- the local runner ---------------------------------------------------------------------------
def test_dry_run_proposes_and_checks_runs_without_training(tmp_path, capsys):
    sweep = _write(tmp_path, GOOD + "  seed: {values: [0, 1]}\n", "two.yaml")
    assert run_cli(_script("sweep_local").main, [str(sweep), "--count", "9", "--dry_run",
                                                  "--out_dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count("--dry_run") == 0 and out.count(PROGRAM) == 4 and "the grid is done after 4 runs" in out
    assert not (tmp_path / "out").exists()


def test_random_search_proposals_stay_in_their_ranges(tmp_path):
    text = GOOD.replace("method: grid", "method: random") + "  lr_d: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0e-3}\n"
    lines = []
    runs = run_sweep(_write(tmp_path, text, "random.yaml"), 5, tmp_path / "out", dry_run=True, say=lines.append)
    values = [r.config["lr_d"]["value"] for r in runs]
    assert len(set(values)) == 5 and all(1e-5 <= v <= 1e-3 for v in values)
    assert {r.config["loss"]["value"] for r in runs} <= {"hinge", "nonsaturating"}
    assert sum(line.startswith("  ") and PROGRAM in line for line in lines) == 5


def test_a_failed_run_is_reported_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweep = _write(tmp_path, f"""
        program: scripts/train.py
        command:
          - ${{env}}
          - python
          - ${{program}}
          - ${{args}}
        method: grid
        metric: {{name: loss/d, goal: minimize}}
        parameters:
          dataset: {{values: [mnist, ring]}}
          data_root: {{value: {tmp_path / 'no_data'}}}
          batch_size: {{value: 16}}
          g_width: {{value: 8}}
          d_width: {{value: 8}}
          max_steps: {{value: 4}}
          log_every_n_steps: {{value: 1}}
          accelerator: {{value: cpu}}
          devices: {{value: "1"}}
          logger: {{value: csv}}
    """, "fail.yaml")
    lines = []
    runs = run_sweep(sweep, 2, tmp_path / "out", say=lines.append)
    assert [r.status for r in runs] == ["failed (exit 2)", "finished"]
    assert "error:" in lines[1] and "000.log" in lines[1]  # the run's own one-line error, and where its log is
    assert len(runs[1].values) == 4  # loss/d of the ring run, read from its metrics.csv
    table = lines[-1]
    assert "| 000 | failed (exit 2) | mnist |" in table and "| 001 | finished | ring |" in table
    assert run_cli(_script("sweep_local").main, [str(sweep), "--count", "1", "--out_dir", str(tmp_path / "o2")]) == 1


FAKE_TRAIN = """
import csv, signal, sys, time
from pathlib import Path
run_dir, value = Path(sys.argv[1]), float(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # like train.py: checkpoint, exit 0
run_dir.mkdir(parents=True)
with (run_dir / "metrics.csv").open("w", newline="") as f:
    w = csv.writer(f); w.writerow(["step", "fid"])
    for i in range(40):
        w.writerow([i, value]); f.flush(); time.sleep(0.05)
"""


@pytest.mark.parametrize("value, status", [(10.0, "stopped early"), (1.0, "finished")])
def test_hyperband_stops_a_run_that_falls_behind(tmp_path, value, status):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    sweep = {"method": "grid", "metric": {"name": "fid", "goal": "minimize"},
             "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2}, "parameters": {}}
    done = [LocalRun(n, [], tmp_path / n, {}, "finished", values=[5.0] * 20) for n in ("a", "b")]
    run = LocalRun("c", [], tmp_path / "c", {})
    train_run(run, [sys.executable, str(script), str(run.run_dir), str(value)], sweep, done, dict(os.environ),
              tmp_path / "c.log", poll_s=0.2)
    assert run.status == status
    assert (len(run.values) < 40) == (status == "stopped early")


def test_bayesian_search_is_fed_the_finished_runs_metric():
    sweep = load_sweep(ROOT / "sweeps" / "noise_bayes.yaml")
    metric = sweep["metric"]["name"]
    runs = []
    for i, fid in enumerate([30.0, 20.0, 25.0]):
        config = suggest(sweep, [r.sweep_run(metric) for r in runs])[0].config
        runs.append(LocalRun(f"{i:03d}", [], Path("."), config, "finished", values=[fid + 5, fid]))
    proposed = suggest(sweep, [r.sweep_run(metric) for r in runs])[0]
    info = proposed.search_info
    assert "no valid samples" not in info["warnings"] and 20 <= info["predicted_value"] <= 30
    spec = sweep["parameters"]
    for key in ("noise_std", "noise_final_std", "noise_anneal_steps"):
        assert spec[key]["min"] <= proposed.config[key]["value"] <= spec[key]["max"]


def test_smoke_sweep_runs_locally_with_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("GAN_LIGHTNING_CACHE", str(tmp_path / "cache"))
    lines = []
    runs = run_sweep(ROOT / "sweeps" / "smoke.yaml", 2, tmp_path / "sweeps", say=lines.append)
    assert [r.status for r in runs] == ["finished", "finished"], lines
    for run in runs:
        rows = list(csv.DictReader((run.run_dir / "metrics.csv").open()))
        assert [float(r["fid/lenet_1k"]) for r in rows if r["fid/lenet_1k"]] == run.values
        assert len(run.values) == 1 and run.values[0] > 0  # measured once, after the last epoch
        assert list((run.run_dir / "wandb").glob("offline-run-*"))  # logged to W&B, offline
    assert [r.config["seed"]["value"] for r in runs] == [0, 1]
    assert "| fid/lenet_1k (last) |" in lines[-1]
