"""W&B sweeps of ``scripts/train.py``: load and check a sweep YAML, and turn its runs into train.py flags.

A sweep file in ``sweeps/`` is what ``wandb sweep`` takes, unchanged: the agent runs
``command: [${env}, python, ${program}, ${args}]`` with ``program: scripts/train.py`` from the
repository root, and ``${args}`` becomes ``--<parameter>=<value>`` for every parameter (the W&B
agent formats the value with Python's ``str``, so booleans arrive as ``True``/``False``).

:func:`check_sweep` finds, without a W&B server, what would only show once the agent runs:
W&B's own schema (the ``sweeps`` package), a parameter that is not a flag of train.py or a value
(or a distribution bound) that train.py rejects, a ``metric`` that the runs never log
(:func:`run_keys` derives the keys from the code that logs them), a wrong command or program.
Each problem is one line ``<file>: <key>: <why>``. :func:`suggest` asks the ``sweeps`` package
(the engine behind W&B's grid, random and Bayesian search) for the next runs, and
:func:`run_sweep` (``scripts/sweep_local.py``) runs them one after another on this machine.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from gan_lightning.config import FIELD_TYPES, TrainConfig, parse_args
from gan_lightning.errors import NotApplicable, UsageError
from gan_lightning.metrics.keys import run_metric_keys

PROGRAM = "scripts/train.py"
COMMAND = ["${env}", "python", "${program}", "${args}"]
# Flags a sweep must not vary: they are per run (run_name), make train.py not train (dry_run), or
# point at one run's files (resume).
NOT_SWEEPABLE = {"dry_run": "it makes train.py print its config instead of training",
                 "resume": "a sweep run cannot continue another run's checkpoint",
                 "run_name": "every run of a sweep needs its own folder (the default name is unique)"}


class SweepError(UsageError):
    """A sweep file that W&B or train.py would reject; the message names the file, the key and why."""


def engine():
    """The ``sweeps`` package (W&B's sweep engine), imported quietly; a UsageError saying how to install it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic's notice about the package's v1-style config
            import sweeps
            import sweeps.params
    except ImportError:
        raise UsageError("checking and running sweeps needs W&B's sweep engine: "
                         "pip install --no-deps sweeps==0.3.0 && pip install jsonschema jsonref") from None
    return sweeps


# -- loading -----------------------------------------------------------------------------------
def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep YAML into a dict.

    Raises:
        SweepError: a missing file, invalid YAML, or YAML that is not a mapping.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping (method, metric, parameters, ...)")
    return data


# -- what a run logs ---------------------------------------------------------------------------
def run_keys(cfg: TrainConfig) -> set[str]:
    """Every key a run of ``cfg`` logs (W&B history and metrics.csv), taken from the code that logs it."""
    from gan_lightning.callbacks.accuracy import discriminator_stats
    from gan_lightning.callbacks.probe import LOGGED as PROBE_LOGGED
    from gan_lightning.diagnostics.gradients import PAPER_G_COSTS
    import torch

    keys = {"epoch", "trainer/global_step", "loss/d", "loss/g", "noise/sigma"}  # modules/gan.py
    if cfg.task == "semi_supervised":  # modules/semi_supervised.py
        keys |= {"loss/d_supervised", "loss/d_unsupervised", "ssl/train_error_labeled", "ssl/lr_scale",
                 "ssl/test_error", "ssl/test_error_live"}
    if cfg.diagnostics:
        keys |= set(discriminator_stats(torch.zeros(1), torch.zeros(1)))
        keys |= {"grad_norm/d", "grad_norm/g"}
        if cfg.shadow_every_n_steps:
            keys |= {f"grad_norm/g_{name}" for name in PAPER_G_COSTS}
    if cfg.probe_every_n_epochs:
        keys |= {f"probe/{k}" for k in PROBE_LOGGED}
    return keys | run_metric_keys(cfg)


# -- flags of a run ----------------------------------------------------------------------------
def run_flags(run_config: dict[str, Any]) -> list[str]:
    """``--key=value`` for each parameter of a run, formatted as the W&B agent formats ``${args}``.

    Args:
        run_config: ``{name: {"value": v}}`` (a SweepRun's config) or ``{name: v}``.
    """
    flags = []
    for key, spec in run_config.items():
        value = spec["value"] if isinstance(spec, dict) and "value" in spec else spec
        if hasattr(value, "item"):  # numpy scalars from the sweeps package; the agent gets JSON numbers
            value = value.item()
        flags.append(f"--{key}={value}")
    return flags


def command(sweep: dict[str, Any], flags: Sequence[str], python: str = "python",
            root: str | Path = ".") -> list[str]:
    """The command the W&B agent would run for ``flags``, with ``python`` as the interpreter.

    ``${env}`` (``/usr/bin/env``) is left out: ``python`` is given as a path.
    """
    out: list[str] = []
    for part in sweep.get("command", COMMAND):
        part = str(part)
        if part == "${env}":
            continue
        if part in ("python", "${interpreter}"):
            out.append(python)
        elif part == "${program}":
            out.append(str(Path(root) / sweep.get("program", PROGRAM)))
        elif part == "${args}":
            out.extend(flags)
        else:
            out.append(part)
    return out


# -- checking ----------------------------------------------------------------------------------
def candidate_values(name: str, spec: dict[str, Any]) -> list[Any]:
    """The values of a parameter to check: all listed values, else the ends and middle of its range."""
    import numpy as np

    HyperParameter = engine().params.HyperParameter

    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    param = HyperParameter(name, spec)
    out = []
    for q in (0.0, 0.5, 1.0):
        v = param.ppf(np.array([q]))
        v = v[0] if isinstance(v, (list, np.ndarray)) else v
        v = v.item() if hasattr(v, "item") else v
        if isinstance(v, float) and not math.isfinite(v):  # unbounded (normal) distributions
            continue
        out.append(v)
    return out


def check_runs(parameters: dict[str, Any], method: str, max_grid: int = 2000) -> list[dict[str, Any]]:
    """Runs whose flags are checked: the whole grid (up to ``max_grid`` runs), else one run per listed
    value and range point, with the other parameters at their first value (middle of a range)."""
    import itertools

    values = {name: candidate_values(name, spec) for name, spec in parameters.items()}
    if method == "grid" and math.prod(len(v) for v in values.values()) <= max_grid:
        return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
    base = {name: v[0] if "values" in parameters[name] else v[len(v) // 2] for name, v in values.items()}
    return [{**base, name: value} for name, vs in values.items() for value in vs]


def parse_run(values: dict[str, Any]) -> TrainConfig:
    """Parse a run's parameters exactly as train.py would (via the agent's ``--key=value`` flags)."""
    return parse_args(run_flags(values))[0]


def applicable_configs(runs: Iterable[dict[str, Any]]) -> list[TrainConfig]:
    """The configs of ``runs`` (:func:`check_runs`), less the holes of the grid (:class:`NotApplicable`).

    Raises:
        UsageError: a run that train.py would refuse for another reason.
    """
    configs = []
    for run in runs:
        try:
            configs.append(parse_run(run))
        except NotApplicable:
            continue
    return configs


def _schema_problems(sweep: dict[str, Any]) -> list[str]:
    sweeps = engine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return list(sweeps.schema_violations_from_proposed_config(sweep))
        except ValueError as e:
            return [str(e)]


def _quoted_numbers(sweep: dict[str, Any]) -> list[str]:
    """Bounds that YAML read as strings: ``1e-5`` (no dot) is a string in YAML 1.1, and the schema
    error it causes does not say so."""
    found = []
    parameters = sweep.get("parameters")
    for name, spec in (parameters.items() if isinstance(parameters, dict) else ()):
        for key in ("min", "max", "mu", "sigma", "q"):
            value = spec.get(key) if isinstance(spec, dict) else None
            if isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    continue
                mantissa, _, exponent = value.lower().partition("e")
                dotted = f"{mantissa}{'' if '.' in mantissa else '.0'}e{exponent}" if exponent else value
                found.append(f"parameters.{name}.{key}: {value!r} is a string to YAML (a number with an exponent "
                             f"needs a dot: write {dotted})")
    return found


def sweep_problems(sweep: dict[str, Any], source: str = "sweep") -> list[str]:
    """Everything wrong with a sweep config, one line each: ``<source>: <key>: <why>``.

    Checks W&B's sweep schema, ``program`` and ``command``, that each parameter is a flag of
    train.py that a sweep may vary, that train.py accepts every listed value and both ends of every
    range (with the other parameters at their first value), and that ``metric.name`` is logged by
    every such run. A run that train.py refuses as :class:`NotApplicable` (``--remedy roth`` with
    ``--loss hinge``) is a hole in the grid, not a problem: sweep_local.py and train.py under
    ``wandb agent`` skip it.
    """
    problems = [f"{source}: {m}" for m in _quoted_numbers(sweep)] or \
        [f"{source}: schema: {m}" for m in _schema_problems(sweep)]
    if sweep.get("program") != PROGRAM:
        problems.append(f"{source}: program: must be {PROGRAM} (run `wandb agent` from the repository root), "
                        f"got {sweep.get('program')!r}")
    if sweep.get("command") != COMMAND:
        problems.append(f"{source}: command: must be {COMMAND} (train.py takes --key=value flags), "
                        f"got {sweep.get('command')!r}")
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        return problems + [f"{source}: parameters: a sweep needs a mapping of train.py flags to values"]
    good = {}
    for name, spec in parameters.items():
        where = f"{source}: parameters.{name}"
        if name not in FIELD_TYPES:
            close = difflib.get_close_matches(str(name), FIELD_TYPES, n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see `python scripts/train.py --help`"
            problems.append(f"{where}: not a flag of {PROGRAM}{hint}")
        elif name in NOT_SWEEPABLE:
            problems.append(f"{where}: a sweep must not set it: {NOT_SWEEPABLE[name]}")
        elif not isinstance(spec, dict) or "parameters" in spec:
            problems.append(f"{where}: give value, values or a distribution (nested parameters would reach "
                            f"{PROGRAM} as one dict-valued flag)")
        else:
            try:
                candidate_values(name, spec)
                good[name] = spec
            except Exception as e:  # the sweeps package's own message for a bad distribution
                problems.append(f"{where}: {' '.join(str(e).split())}")
    if len(good) < len(parameters):
        return problems
    configs, seen = [], set()
    for run in check_runs(good, str(sweep.get("method"))):
        try:
            configs.append(parse_run(run))
        except NotApplicable:  # a hole in the grid (a remedy that does not apply to the loss): skipped
            continue
        except UsageError as e:
            # Name the parameter the message is about (train.py's messages start with its flag).
            culprit = next((k for k in run if re.match(rf"--{k}\b", str(e))), None)
            key = f"parameters.{culprit}: value {run[culprit]!r}" if culprit else f"run {run_flags(run)}"
            line = f"{source}: {key}: {e}"
            if line not in seen:
                seen.add(line)
                problems.append(line)
    metric = (sweep.get("metric") or {}).get("name")
    if not metric:
        problems.append(f"{source}: metric.name: missing; name a key train.py logs, e.g. fid/lenet_5k")
    else:
        for cfg in configs:
            keys = run_keys(cfg)
            if metric not in keys:
                found = sorted(run_metric_keys(cfg)) or sorted(k for k in keys if "/" in k)[:6]
                hint = ("turn the metrics on with metric_every_n_epochs > 0" if not run_metric_keys(cfg)
                        else f"they log {', '.join(found)}")
                problems.append(f"{source}: metric.name: {metric!r} is never logged by runs with dataset="
                                f"{cfg.dataset}, metric_num_samples={cfg.metric_num_samples} ({hint})")
                break
    return problems


def check_sweep(sweep: dict[str, Any], source: str = "sweep") -> None:
    """Raise SweepError with the first problem of :func:`sweep_problems` (and how many more there are)."""
    problems = sweep_problems(sweep, source)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SweepError(problems[0] + more)


def load_checked(path: str | Path) -> dict[str, Any]:
    """:func:`load_sweep` then :func:`check_sweep`, naming the file in every message."""
    sweep = load_sweep(path)
    check_sweep(sweep, str(path))
    return sweep


# -- the runs of a sweep -----------------------------------------------------------------------
def suggest(sweep: dict[str, Any], runs: Iterable[Any] = (), n: int = 1) -> list[Any]:
    """The next ``n`` runs the W&B engine proposes, given the sweep's runs so far.

    Grid search returns fewer (none once the grid is done); Bayesian search uses the finished
    runs' metric values (``SweepRun.history`` / ``summary_metrics``).

    Returns:
        ``sweeps.SweepRun`` objects; ``run.config`` is ``{name: {"value": v}}``.
    """
    sweeps = engine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = sweeps.next_runs(sweep, list(runs), validate=False, n=n)
    return [r for r in found if r is not None]
