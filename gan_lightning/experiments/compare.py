"""Compare runs: a metric (FID) against training progress, grouped by loss and noise schedule.

Runs come from run folders (``<runs_dir>/**/metrics.csv`` with ``config.yaml`` beside it; every
run writes both, also when it logs to W&B, online or offline) or from the W&B API. A run's group
is its W&B group, :func:`gan_lightning.runs.loggers.run_group` of its config (``<loss>-noise_<schedule>``),
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
from typing import Any, Iterable, Sequence

from gan_lightning.errors import UsageError
from gan_lightning.metrics.keys import PRIMARY

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
    from gan_lightning.runs.loggers import run_group

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


# -- reading runs ------------------------------------------------------------------------------
def read_run_folder(folder: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(config, rows of metrics.csv) of one run folder."""
    import yaml

    from gan_lightning.diagnostics.diagnosis import read_rows

    return yaml.safe_load((folder / "config.yaml").read_text()) or {}, read_rows(folder)


def find_metric(columns: Iterable[str], prefix: str = f"{PRIMARY}/") -> str | None:
    """The first (sorted) column starting with ``prefix``, e.g. ``fid/lenet_5k``; None if there is none."""
    return next(iter(sorted(c for c in columns if c.startswith(prefix))), None)


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


def local_curves(runs_dir: str | Path, metric: str = "", group_by: Sequence[str] = ()) -> tuple[list[Curve], str]:
    """Curves of every run folder under ``runs_dir`` (sweep folders nest them one level deeper).

    Args:
        runs_dir: folder searched recursively for ``metrics.csv`` next to a ``config.yaml``.
        metric: the key to compare; "" for the first ``fid/*`` key the runs log.
        group_by: config keys that define a group; empty for the W&B group (loss and noise schedule).

    Returns:
        The curves of the runs that logged the metric, and the metric.

    Raises:
        UsageError: no such folder, no run folders in it, or no run logged the metric.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise UsageError(f"--runs_dir: no such folder {runs_dir}")
    folders = sorted(p.parent for p in root.rglob("metrics.csv") if (p.parent / "config.yaml").is_file())
    if not folders:
        raise UsageError(f"--runs_dir: no run folders (metrics.csv + config.yaml) under {runs_dir}")
    runs = [(folder, *read_run_folder(folder)) for folder in folders]
    columns = {c for _, _, rows in runs for row in rows[:1] for c in row} | {c for _, _, rows in runs
                                                                            for row in rows[-1:] for c in row}
    metric = metric or find_metric(columns) or ""
    if not metric:
        raise UsageError(f"no fid/* key in the runs under {runs_dir}; pass --metric (e.g. modes_covered/2.5k)")
    curves = [curve_from_rows(str(folder.relative_to(root)), config, rows, metric, group_by)
              for folder, config, rows in runs]
    for curve, (_, config, rows) in zip(curves, runs):
        curve.verdict = run_verdict(config, rows)
    return _logged(curves, metric, runs_dir), metric


def run_verdict(config: dict[str, Any], rows: Sequence[dict[str, str]]) -> str:
    """The stability verdict of a run's rows ("healthy", or verdict names joined by "+"); "" when
    the rows hold nothing to diagnose."""
    from gan_lightning.diagnostics.diagnosis import has_diagnostics
    from gan_lightning.diagnostics.verdicts import diagnose
    from gan_lightning.runs.diagnosis import num_modes

    if not has_diagnostics(rows):
        return ""
    return "+".join(v.name for v in diagnose(rows, num_modes=num_modes(config)))


def wandb_curves(project: str, metric: str = "", filters: dict[str, Any] | None = None,
                 group_by: Sequence[str] = ()) -> tuple[list[Curve], str]:
    """Curves of the runs of a W&B project (``wandb.Api().runs(project, filters)``).

    The metric defaults to the first ``fid/*`` key in the runs' summaries; progress is the
    history's ``trainer/global_step`` (Lightning's logging step, as in metrics.csv) + 1.
    """
    import wandb

    try:
        runs = list(wandb.Api().runs(project, filters=filters or {}))
    except Exception as e:  # no network, no key, no such project: one line
        raise UsageError(f"--project {project}: cannot read runs from W&B ({' '.join(str(e).split())[:200]})") from None
    metric = metric or find_metric({k for r in runs for k in r.summary.keys()}) or ""
    if not metric:
        raise UsageError(f"no fid/* key in the summaries of {project}'s runs; pass --metric")
    curves = []
    for run in runs:
        rows = [{"step": str(h.get("trainer/global_step", h.get("_step"))), metric: str(h.get(metric))}
                for h in run.scan_history(keys=[metric, "trainer/global_step"])]
        curve = curve_from_rows(run.name, dict(run.config), rows, metric, group_by)
        curve.verdict = str(run.summary.get("diagnosis/verdict", "")).replace(", ", "+")  # written at the run's end
        if not group_by:
            curve.group = run.group or curve.group
        curves.append(curve)
    return _logged(curves, metric, project), metric


def _logged(curves: list[Curve], metric: str, where: str) -> list[Curve]:
    kept = [c for c in curves if c.values]
    if not kept:
        raise UsageError(f"no run under {where} logged {metric}; pass another --metric")
    return kept


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


def plot(curves: Sequence[Curve], metric: str, path: str | Path) -> Path:
    """Write a PNG of the metric against G steps: one colour per group, one line per run (seed)."""
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
    ax.set_title(f"{metric}, {len(groups)} groups, {len(curves)} runs")
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
