"""Where each threshold decided on the calibration corpus sits among its runs: the quantity it is compared
with, measured on every labeled run, and the nearest run on each side (the margin the decision has).

A threshold that was changed to meet the calibration targets must have corpus runs on both sides of it;
this is the table that shows them (docs/verdicts_calibration.md, "Decided thresholds").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from gan_lightning.diagnostics import outcome as O
from gan_lightning.diagnostics import verdicts as V

Rows = Sequence[Mapping[str, Any]]


def unstable_growth(rows: Rows, config: Mapping[str, Any]) -> float | None:
    """Median of the last third of G's -log D gradient norms over that of the first third (None: too few)."""
    thirds = V.nonsaturating_thirds(rows)
    return None if thirds is None else thirds[3] / thirds[2]


def bce_peak(rows: Rows, config: Mapping[str, Any]) -> float | None:
    """The largest finite |D's loss| of a run trained on a sigmoid cross-entropy cost (None: another cost)."""
    if config.get("loss") not in V.BCE_LOSSES:
        return None
    values = [abs(v) for _, v in V.series(rows, "loss/d") if math.isfinite(v)]
    return max(values, default=None)


def stall_ratio(rows: Rows, config: Mapping[str, Any]) -> float | None:
    """FID at the end over FID when the first outcome-graded symptom began (None: no such symptom or no FID)."""
    result = O.primary(rows)
    if result is None or result.better != "min":
        return None
    starts = [min(x0 for x0, _ in v.ranges) for v in V.diagnose(rows, loss=config.get("loss", ""))
              if v.ranges and not v.harm and v.name not in ("healthy", "vanishing_gradient")]
    if not starts:
        return None
    (start_x, start), (end_x, end) = result.at(min(starts)), result.end
    return end / start if end_x > start_x else None


# (threshold, its value, the quantity it is compared with, how to measure it, the verdict it decides, the
# family whose runs must reach it: "" for every run labeled with the verdict)
DECISIONS = (
    ("verdicts.UNSTABLE_GROWTH (scatter condition dropped)", V.UNSTABLE_GROWTH,
     "growth of G's -log D gradient norm, last third over first", unstable_growth, "unstable_gradient", ""),
    ("verdicts.EXPLODED_BCE", V.EXPLODED_BCE, "largest magnitude of loss/d under a cross-entropy cost", bce_peak,
     "divergence", "divergence (exploding)"),
    ("outcome.STALL_RATIO", O.STALL_RATIO, "FID at the end over FID when a symptom began", stall_ratio,
     "d_saturation", ""),
)


def margins(scored: Sequence[Any], corpus: str | Path) -> list[str]:
    """Markdown lines: per decided threshold, the runs that must reach it (labeled with its verdict, of its
    family) and those that must not (labeled healthy, or built for a failure that does not include it), the
    nearest of each to the threshold, and any run on the wrong side."""
    from gan_lightning.runs.diagnosis import local_run

    loaded = {s.entry.name: local_run(Path(corpus) / s.entry.name) for s in scored if s.labels}
    lines = ["## Decided thresholds", "",
             "Each threshold set or changed on this corpus, the quantity it is compared with on every labeled run, "
             "and the nearest run on each side (*must fire*: labeled with the verdict, of the family the threshold is "
             "for; *must not*: labeled healthy or with other failures that do not include it).", "",
             "| threshold | value | quantity | must fire: lowest | must not: highest | wrong side |",
             "|---|---|---|---|---|---|"]
    for name, t, what, quantity, verdict, family in DECISIONS:
        fire, quiet = [], []
        for s in scored:
            if not s.labels:
                continue
            config, rows = loaded[s.entry.name]
            q = quantity(rows, config)
            if q is None:
                continue
            if verdict in s.labels and family in s.entry.family:
                fire.append((q, s.entry.name))
            elif verdict not in s.labels and verdict not in s.entry.also:
                quiet.append((q, s.entry.name))
        wrong = [n for q, n in fire if q < t] + [n for q, n in quiet if q >= t]
        low = f"{min(fire)[0]:.4g} ({min(fire)[1]}, of {len(fire)})" if fire else "-"
        high = f"{max(quiet)[0]:.4g} ({max(quiet)[1]}, of {len(quiet)})" if quiet else "-"
        lines.append(f"| `{name}` | {t:.4g} | {what} | {low} | {high} | {', '.join(wrong) or 'none'} |")
    return lines
