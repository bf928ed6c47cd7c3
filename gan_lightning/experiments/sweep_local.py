"""Running a W&B sweep on this machine, without a W&B account (``scripts/sweep_local.py``): W&B's own
sweep engine suggests each run, ``scripts/train.py`` trains it in a subprocess, and the metric
comes back from the run's metrics.csv.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gan_lightning.config import parse_args
from gan_lightning.errors import NotApplicable, UsageError
from gan_lightning.experiments.sweeps import command, engine, load_checked, run_flags, suggest
from gan_lightning.runs.folder import series


@dataclass
class LocalRun:
    """One run of a local sweep: its flags, folder, outcome and metric values."""

    name: str
    flags: list[str]
    run_dir: Path
    config: dict[str, Any]
    status: str = "pending"  # finished, stopped early, failed (exit N), dry run, not applicable
    values: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def best(self, goal: str) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        return (min if goal == "minimize" else max)(finite) if finite else None

    def sweep_run(self, metric: str) -> Any:
        """The run as the ``sweeps`` engine sees it (Bayesian search and hyperband read its history)."""
        state = {"pending": "pending", "dry run": "pending", "running": "running"}.get(self.status, "finished")
        if self.status.startswith("failed"):
            state = "failed"
        return engine().SweepRun(name=self.name, state=state, config=self.config,
                        history=[{metric: v} for v in self.values],
                        summary_metrics={metric: self.values[-1]} if self.values else {})


def run_trial(run: LocalRun, cmd: list[str], sweep: dict[str, Any], done: list[LocalRun], env: dict[str, str],
             log: Path, poll_s: float) -> None:
    """Run ``cmd`` (one train.py run) in its own process and record its outcome in ``run``.

    With ``early_terminate`` in the sweep, every ``poll_s`` seconds the run's metric history
    (its metrics.csv) and the finished runs ``done`` go to the ``sweeps`` engine's hyperband
    rule; a run it stops gets SIGTERM (train.py saves last.ckpt and exits 0).

    Args:
        run: the run; its ``status``, ``values`` and ``seconds`` are set here.
        cmd: the command line.
        sweep: the sweep config (``metric``, ``early_terminate``).
        done: the sweep's earlier runs.
        env: the process environment.
        log: file that gets the process's stdout and stderr.
        poll_s: seconds between hyperband checks.
    """
    import subprocess

    sweeps = engine()
    metric = sweep["metric"]["name"]
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        stopped = False
        while proc.poll() is None:
            try:
                proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
            if "early_terminate" in sweep and not stopped and proc.poll() is None:
                run.values, run.status = series(run.run_dir, metric), "running"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    to_stop = sweeps.stop_runs(sweep, [r.sweep_run(metric) for r in [*done, run]])
                if any(r.name == run.name for r in to_stop):
                    proc.terminate()  # train.py saves last.ckpt after the current batch and exits 0
                    stopped = True
                    try:
                        proc.wait(timeout=600)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    run.seconds = time.monotonic() - start
    run.values = series(run.run_dir, metric)
    run.status = f"failed (exit {proc.returncode})" if proc.returncode else ("stopped early" if stopped else "finished")


def run_sweep(path: str | Path, count: int, out_dir: str | Path = "runs/sweeps", *, dry_run: bool = False,
              logger: str = "", seed: int = 0, python: str | None = None, poll_s: float = 5.0,
              say=print) -> list[LocalRun]:
    """Run up to ``count`` runs of a sweep one after another, each in its own train.py process.

    Runs are proposed by the ``sweeps`` package as W&B would (Bayesian search sees the finished
    runs' metric values; hyperband ``early_terminate`` stops a run with SIGTERM, after which
    train.py saves its checkpoint). W&B logs offline (``WANDB_MODE=offline``). A failed run is
    reported and the sweep goes on. Runs go to ``<out_dir>/<sweep name>-<time>/<NNN>/`` with the
    output of each in ``<NNN>.log`` next to it, a copy of the sweep file (``sweep.yaml``) and the
    final table (``results.md``).

    Args:
        path: the sweep YAML.
        count: most runs to make (a grid may end sooner).
        out_dir: folder of local sweeps.
        dry_run: print each run's command and check its flags, train nothing.
        logger: replaces the sweep's ``logger`` parameter when given (``csv``: no W&B at all).
        seed: seed of the random and Bayesian proposals.
        python: interpreter of the runs (default: this one).
        poll_s: seconds between hyperband checks of a running run.

    Raises:
        SweepError: a missing or invalid sweep file; UsageError: count < 1.
    """
    import os
    import random
    import sys

    import numpy as np

    if count < 1:
        raise UsageError(f"--count: must be >= 1, got {count}")
    sweep = load_checked(path)
    root = Path(__file__).resolve().parents[2]
    random.seed(seed)
    np.random.seed(seed)
    folder = Path(out_dir) / f"{Path(path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    while folder.exists():
        folder = folder.with_name(folder.name + "-1")
    env = {**os.environ, "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    metric = sweep["metric"]["name"]  # the engine reads the goal from the sweep itself
    runs: list[LocalRun] = []
    for i in range(count):
        proposed = suggest(sweep, [r.sweep_run(metric) for r in runs])
        if not proposed:
            say(f"the grid is done after {len(runs)} runs")
            break
        name = f"{i:03d}"
        config = proposed[0].config  # as the engine proposed it (Bayesian search reads it back)
        flags = run_flags({**config, **({"logger": logger} if logger else {})})
        run = LocalRun(name, flags, folder / name, config)
        runs.append(run)
        args = [*flags, f"--out_dir={folder}", f"--run_name={name}"]
        cmd = command(sweep, args, python or sys.executable, root)
        say(f"[{i + 1}/{count}] {' '.join(flags)}")
        try:
            parse_args(args)  # what train.py would reject, without training
        except NotApplicable as e:  # a hole in the grid: no run, and not a failure
            run.status = "not applicable"
            say(f"  skipped: {e}")
            continue
        except UsageError:
            if dry_run:
                raise
            # otherwise train.py says it in the run's log, and the run counts as failed
        if dry_run:
            run.status = "dry run"
            say("  " + " ".join(cmd))
            continue
        if not folder.is_dir():
            folder.mkdir(parents=True)
            (folder / "sweep.yaml").write_text(Path(path).read_text())  # what these runs came from
        log = folder / f"{name}.log"
        run_trial(run, cmd, sweep, runs[:-1], env, log, poll_s)
        tail = f", {metric} = {run.values[-1]:.4g}" if run.values else f", no {metric} logged"
        if run.status.startswith("failed"):
            last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            tail += f": {last[-1].strip() if last else ''} (full output: {log})"
        say(f"  {run.status} in {run.seconds:.0f} s{tail}")
    if not dry_run:
        table = results_table(runs, sweep)
        if folder.is_dir():
            (folder / "results.md").write_text(table + "\n")
        say(table)
    return runs


def results_table(runs: Sequence[LocalRun], sweep: dict[str, Any]) -> str:
    """Markdown table of the runs: status, the parameters that vary, last and best metric value."""
    metric, goal = sweep["metric"]["name"], sweep["metric"].get("goal", "minimize")
    varying = [k for k, spec in sweep["parameters"].items() if "value" not in spec]
    rows = [["run", "status", *varying, f"{metric} (last)", f"{metric} (best)", "seconds"]]
    for run in runs:
        values = {k: v["value"] for k, v in run.config.items()}
        best = run.best(goal)
        rows.append([run.name, run.status, *(f"{values.get(k)}" for k in varying),
                     f"{run.values[-1]:.4g}" if run.values else "-", f"{best:.4g}" if best is not None else "-",
                     f"{run.seconds:.0f}"])
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)
