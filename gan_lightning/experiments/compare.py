"""Compare runs: a metric (FID) against training progress, grouped by loss and noise schedule.

Runs come from run folders (``<runs_dir>/**/metrics.csv`` with ``config.yaml`` beside it; every
run writes both, also when it logs to W&B, online or offline) or from the W&B API. A run's group
is its W&B group, :func:`gan_lightning.trainer.loggers.run_group` of its config (``<loss>-noise_<schedule>``),
so a group holds the seeds of one setting. Per group the table gives the final and the best value
of the metric as mean and sample standard deviation (n - 1) over its runs.

Progress is counted in generator steps. ``metrics.csv``'s ``step`` column is Lightning's logging
step: the number of training batches done, minus one, when the value was logged (not
``trainer.global_step``, which with manual optimization counts D and G optimizer steps). The GAN
module makes one G update per batch, so G steps = step + 1.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from gan_lightning.errors import UsageError
from gan_lightning.metrics.keys import BEST

# Metrics where higher is better; every other metric (FID, KID, test error, losses) is minimized.
MAXIMIZED = ("is_mean", "precision", "recall", "modes_covered", "high_quality")


@dataclass
class Curve:
    """One run's values of the metric against G steps."""

    name: str
    group: str
    seed: int | None
    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    verdict: str = ""  # the run's stability verdict (runs/diagnosis.py): "healthy" or verdict names

    @property
    def final(self) -> float:
        return self.values[-1]

    def best(self, goal: str) -> float:
        return (min if goal == "minimize" else max)(self.values)


def goal_of(metric: str) -> str:
    """``maximize`` for metrics where higher is better (IS, precision, recall, mode coverage), else ``minimize``."""
    return "maximize" if metric.split("/")[0] in MAXIMIZED else "minimize"


def group_of(config: dict[str, Any], keys: Sequence[str] = ()) -> str:
    """A run's group: ``k1=v1,k2=v2`` over ``keys`` of its config, else its W&B group (loggers.run_group).

    Raises:
        UsageError: a key that is not in the config.
    """
    from gan_lightning.config import config_from_dict
    from gan_lightning.trainer.loggers import run_group

    missing = [k for k in keys if k not in config]
    if missing:
        raise UsageError(f"--group_by: {missing[0]!r} is not a config key of the runs")
    return ",".join(f"{k}={config[k]}" for k in keys) if keys else run_group(config_from_dict(config))


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


# Every quality metric a run logs, in the order they are preferred on a tie (FID first): metrics.keys.BEST.
FAMILIES = tuple(BEST)


def _family(key: str) -> str | None:
    """The metric a logged key measures (``fid/lenet_5k`` -> ``fid``), None for keys that are no quality
    metric (losses, gradient norms, ``step``)."""
    return next((f for f in FAMILIES if key == f or key.startswith(f"{f}/")), None)


def _preference(counts: Counter) -> Callable[[str], tuple]:
    return lambda key: (-counts[key], FAMILIES.index(_family(key)), key)


def _runs(n: int) -> str:
    return f"{n} run{'' if n == 1 else 's'}"


def choose_metric(logged: Sequence[set[str]], metric: str = "") -> tuple[str, str]:
    """The metric to compare and a sentence saying why: ``metric`` when given, else the quality metric
    that the most runs log (ties: FID before the others, then by name, so ``fid/lenet_5k`` comes before
    ``fid/lenet_5k_ema``); ("", "") when no run logs any.

    Args:
        logged: per run, the keys it logged a value of.
        metric: the key asked for with --metric; "" to choose.
    """
    n = len(logged)
    if metric:
        return metric, f"{metric} (--metric), logged by {sum(metric in keys for keys in logged)} of {_runs(n)}"
    counts = Counter(k for keys in logged for k in keys if _family(k))
    if not counts:
        return "", ""
    best = min(counts, key=_preference(counts))
    tied = sorted(k for k in counts if k != best and counts[k] == counts[best])
    tie = f" (tied with {', '.join(tied)}: FID first, then by name)" if tied else ""
    return best, (f"{best}, logged by {counts[best]} of {_runs(n)}: more than any other metric{tie}; "
                  "--metric picks another")


def default_key(keys: Iterable[str]) -> str:
    """The quality metric a run with these keys would be compared on by itself ("" for none)."""
    found = [k for k in keys if _family(k)]
    return min(found, key=_preference(Counter(found))) if found else ""


# Why a run is left out of a comparison; LeftOut.reason, in the order the lines are printed.
NO_METRIC, NOT_FINITE, NO_CONFIG, NO_CSV, UNREADABLE = ("no metric", "not finite", "no config.yaml",
                                                        "no metrics.csv", "unreadable")


@dataclass
class LeftOut:
    """A run a comparison left out, and why."""

    run: str
    reason: str  # NO_METRIC, NOT_FINITE, NO_CONFIG, NO_CSV or UNREADABLE
    detail: str = ""  # NO_METRIC: the key the run would be compared on ("" if none); UNREADABLE: what is wrong


@dataclass
class Selection:
    """The runs a comparison shows, its metric and why, and the runs it left out."""

    curves: list[Curve]
    metric: str
    why: str  # choose_metric's sentence
    left_out: list[LeftOut] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per reason runs were left out (``left out: none`` when none was)."""
        return left_out_lines(self.left_out, self.metric) or ["left out: none"]


def left_out_lines(left_out: Sequence[LeftOut], metric: str) -> list[str]:
    """``left out: 6 runs do not log fid/lenet_1k_ema: a, b, ... (they log fid/lenet_5k: 2, ...; pass --metric
    to compare those)``: one line per reason, naming the runs."""
    lines = []
    for reason in (NO_METRIC, NOT_FINITE, NO_CONFIG, NO_CSV, UNREADABLE):
        members = [r for r in left_out if r.reason == reason]
        if not members:
            continue
        n, one = len(members), len(members) == 1
        names = ", ".join(r.run for r in members)
        if reason == NO_METRIC:
            counts = Counter(r.detail or "no quality metric" for r in members)
            they = ", ".join(f"{k}: {c}" for k, c in sorted(counts.items(), key=lambda kc: (-kc[1], kc[0])))
            text = (f"{_runs(n)} {'does' if one else 'do'} not log {metric}: {names} ({'it logs' if one else 'they log'}"
                    f" {they}; pass --metric to compare those)")
        elif reason == NOT_FINITE:
            text = f"{_runs(n)} logged {metric} only as NaN or inf: {names}"
        elif reason in (NO_CONFIG, NO_CSV):
            has, lacks = ("metrics.csv", "config.yaml") if reason == NO_CONFIG else ("config.yaml", "metrics.csv")
            text = f"{_runs(n)} {'has' if one else 'have'} {has} but no {lacks}: {names}"
        else:
            text = f"{_runs(n)} cannot be read: " + ", ".join(f"{r.run} ({r.detail})" for r in members)
        lines.append(f"left out: {text}")
    return lines


def curve_from_rows(name: str, config: dict[str, Any], rows: Sequence[dict[str, str]], metric: str,
                    group_by: Sequence[str] = ()) -> Curve:
    """The metric's values in logging order, against G steps: a logged ``progress/g_steps`` if there
    is one, else ``step + 1`` (see the module docstring)."""
    curve = Curve(name, group_of(config, group_by), config.get("seed"))
    for row in rows:
        value, g_steps, step = _float(row.get(metric)), _float(row.get("progress/g_steps")), _float(row.get("step"))
        if value is not None and (g_steps is not None or step is not None):
            curve.steps.append(g_steps if g_steps is not None else step + 1)
            curve.values.append(value)
    return curve


def logged_keys(rows: Iterable[dict[str, Any]]) -> set[str]:
    """The keys that hold a number in some row (NaN and inf included: a diverged run logged them)."""
    keys = set()
    for row in rows:
        for key, text in row.items():
            if key not in keys and text not in (None, ""):
                try:
                    float(text)
                except (TypeError, ValueError):
                    continue
                keys.add(key)
    return keys


def _in_wandb_folder(path: Path, root: Path) -> bool:
    return "wandb" in path.relative_to(root).parts  # W&B keeps its own config.yaml under <run>/wandb/


def local_curves(runs_dir: str | Path, metric: str = "", group_by: Sequence[str] = ()) -> Selection:
    """Curves of every run folder under ``runs_dir`` (sweep folders nest them one level deeper).

    Args:
        runs_dir: folder searched recursively for ``metrics.csv`` next to a ``config.yaml``.
        metric: the key to compare; "" for the quality metric the most runs log (:func:`choose_metric`).
        group_by: config keys that define a group; empty for the W&B group (loss and noise schedule).

    Returns:
        The curves of the runs that logged the metric, the metric, why it was chosen, and every other
        folder with a metrics.csv or a config.yaml as left out, with the reason.

    Raises:
        UsageError: no such folder, no readable run folders in it, or no run logged the metric.
    """
    from gan_lightning.runs import folder as run_folder

    root = Path(runs_dir)
    if not root.is_dir():
        raise UsageError(f"--runs_dir: no such folder {runs_dir}")
    csvs = {p.parent for p in root.rglob("metrics.csv")}
    configs = {p.parent for p in root.rglob("config.yaml") if not _in_wandb_folder(p, root)}
    name = (lambda folder: str(folder.relative_to(root)) if folder != root else folder.name)
    left_out = [LeftOut(name(f), NO_CONFIG) for f in sorted(csvs - configs)]
    left_out += [LeftOut(name(f), NO_CSV) for f in sorted(configs - csvs)]
    runs = []
    for folder in sorted(csvs & configs):
        try:
            config, rows = run_folder.config(folder), run_folder.rows(folder)
        except UsageError as e:
            left_out.append(LeftOut(name(folder), UNREADABLE, str(e).removeprefix(f"{folder}: ")))
        except OSError as e:
            left_out.append(LeftOut(name(folder), UNREADABLE, f"{e.strerror or type(e).__name__}: {e.filename}"))
        else:
            runs.append((name(folder), config, rows, logged_keys(rows)))
    if not runs:
        why = "; ".join(line.removeprefix("left out: ") for line in left_out_lines(left_out, metric))
        raise UsageError(f"--runs_dir: no run folders (metrics.csv + config.yaml) under {runs_dir}"
                         + (f" that can be read: {why}" if why else ""))
    metric, why = choose_metric([keys for *_, keys in runs], metric)
    if not metric:
        raise UsageError(f"no run under {runs_dir} logs a quality metric (fid/*, modes_covered/*, ...); pass --metric "
                         "(e.g. loss/d)")
    from gan_lightning.runs.diagnosis import verdict_line

    curves = []
    for run_name, config, rows, keys in runs:
        curve = curve_from_rows(run_name, config, rows, metric, group_by)
        curve.verdict = verdict_line(config, rows)
        curves.append(curve)
    return _select(curves, [keys for *_, keys in runs], metric, why, left_out, runs_dir)


def _select(curves: list[Curve], logged: Sequence[set[str]], metric: str, why: str, left_out: list[LeftOut],
            where: str | Path) -> Selection:
    """The Selection of the curves with values; the others left out (not logged, or only non-finite)."""
    for curve, keys in zip(curves, logged):
        if not curve.values:
            left_out.append(LeftOut(curve.name, NOT_FINITE) if metric in keys else
                            LeftOut(curve.name, NO_METRIC, default_key(keys)))
    kept = [c for c in curves if c.values]
    if not kept:
        lines = left_out_lines([r for r in left_out if r.reason in (NO_METRIC, NOT_FINITE)], metric)
        raise UsageError(f"no run under {where} logged {metric}; {lines[0].removeprefix('left out: ')}"
                         if lines else f"no run under {where} logged {metric}; pass another --metric")
    return Selection(kept, metric, why, left_out)


def wandb_curves(project: str, metric: str = "", filters: dict[str, Any] | None = None,
                 group_by: Sequence[str] = ()) -> Selection:
    """Curves of the runs of a W&B project (``wandb.Api().runs(project, filters)``).

    The metric defaults to the quality metric in the most runs' summaries (:func:`choose_metric`);
    progress is the history's ``trainer/global_step`` (Lightning's logging step, as in metrics.csv) + 1.
    Runs without the metric are left out, with what they log instead.
    """
    import wandb

    try:
        runs = list(wandb.Api().runs(project, filters=filters or {}))
        logged = [set(r.summary.keys()) for r in runs]
    except Exception as e:  # no network, no key, no such project: one line
        raise UsageError(f"--project {project}: cannot read runs from W&B ({' '.join(str(e).split())[:200]})") from None
    if not runs:
        raise UsageError(f"--project {project}: no runs{' match --filters' if filters else ''}")
    metric, why = choose_metric(logged, metric)
    if not metric:
        raise UsageError(f"no quality metric (fid/*, modes_covered/*, ...) in the summaries of {project}'s runs; "
                         "pass --metric")
    curves = []
    for run in runs:
        rows = [{"step": str(h.get("trainer/global_step", h.get("_step"))), metric: str(h.get(metric))}
                for h in run.scan_history(keys=[metric, "trainer/global_step"])] if metric in run.summary else []
        curve = curve_from_rows(run.name, dict(run.config), rows, metric, group_by)
        curve.verdict = str(run.summary.get("diagnosis/verdict", "")).replace(", ", "+")  # written at the run's end
        if not group_by:
            curve.group = run.group or curve.group
        curves.append(curve)
    return _select(curves, logged, metric, why, [], project)


# -- summarizing -------------------------------------------------------------------------------
@dataclass
class GroupStats:
    group: str
    runs: int
    seeds: list[Any]
    final_mean: float
    final_std: float | None  # None for a single run
    best_mean: float
    best_std: float | None
    verdicts: str = ""  # how many runs got each verdict, e.g. "healthy x2, mode_collapse x1"


def group_stats(curves: Sequence[Curve], goal: str = "minimize") -> list[GroupStats]:
    """Per group, the mean and sample std (n - 1) over runs of the final and of the best value; sorted by group."""
    out = []
    for group in sorted({c.group for c in curves}):
        members = [c for c in curves if c.group == group]
        finals = [c.final for c in members]
        bests = [c.best(goal) for c in members]
        std = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else None)
        counts = Counter(c.verdict or "?" for c in members)
        out.append(GroupStats(group, len(members), sorted(c.seed for c in members if c.seed is not None),
                              statistics.fmean(finals), std(finals), statistics.fmean(bests), std(bests),
                              ", ".join(f"{v} x{n}" for v, n in sorted(counts.items()))))
    return out


def markdown_table(stats: Sequence[GroupStats], metric: str, goal: str = "minimize") -> str:
    """Markdown table: group, runs, seeds, final and best (mean ± std over runs), the runs' verdicts."""
    def cell(mean: float, std: float | None) -> str:
        return f"{mean:.4g} ± {std:.2g}" if std is not None else f"{mean:.4g}"

    best = "min" if goal == "minimize" else "max"
    lines = [f"| group | runs | seeds | final {metric} | best ({best}) {metric} | verdicts |", "|---|---|---|---|---|---|"]
    for s in stats:
        lines.append(f"| {s.group} | {s.runs} | {', '.join(map(str, s.seeds))} | {cell(s.final_mean, s.final_std)} "
                     f"| {cell(s.best_mean, s.best_std)} | {s.verdicts} |")
    return "\n".join(lines)


def title(metric: str, groups: int, runs: int, left_out: int = 0) -> str:
    """``fid/lenet_5k, 1 group, 3 runs (6 left out)``: the plot's title."""
    return (f"{metric}, {groups} group{'' if groups == 1 else 's'}, {_runs(runs)}"
            + (f" ({left_out} left out)" if left_out else ""))


def markdown(selection: Selection, stats: Sequence[GroupStats], goal: str = "minimize") -> str:
    """What compare_runs.py prints and writes to ``<metric>.md``: the table, the metric and why it was
    chosen, and one line per reason runs were left out."""
    notes = "\n".join(f"- {line}" for line in selection.notes())
    return f"{markdown_table(stats, selection.metric, goal)}\n\nmetric: {selection.why}\n\n{notes}"


def plot(curves: Sequence[Curve], metric: str, path: str | Path, left_out: int = 0) -> Path:
    """Write a PNG of the metric against G steps: one colour per group, one line per run (seed); the
    title counts the groups, the runs and the ``left_out`` runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({c.group for c in curves})
    colors = plt.get_cmap("tab20" if len(groups) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, group in enumerate(groups):
        for j, c in enumerate(c for c in curves if c.group == group):
            ax.plot(c.steps, c.values, marker="o", markersize=3, linewidth=1, alpha=0.8,
                    color=colors(i % colors.N), label=group if j == 0 else None)
    ax.set_xlabel("generator steps")
    ax.set_ylabel(metric)
    ax.set_title(title(metric, len(groups), len(curves), left_out))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2 if len(groups) > 8 else 1)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def file_stem(metric: str) -> str:
    """A metric key as a file name: ``fid/lenet_5k`` -> ``fid_lenet_5k``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", metric)
