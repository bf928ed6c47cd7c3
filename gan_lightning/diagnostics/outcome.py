"""What a run achieved, read from what it logged, and how a symptom is graded by it.

A symptom (D saturated, a gradient that grew) is a *problem* only where the outcome shows harm: the
primary metric stalled or worsened during or after it, modes were lost, or G's own gradient was gone.
Otherwise it is a *note*: Arjovsky & Bottou predict a near-perfect D under the ``-log D`` cost, and a
run whose FID keeps falling through it was not hurt by it. Without a quality metric a symptom cannot
be graded, and the diagnosis says which evidence was missing instead of guessing.

The primary metric (:func:`primary`): FID for images, modes covered for 2-D mixtures, the test error
of the semi-supervised task; of the generator samples come from (the EMA of G's weights when there
is one, the ``_ema`` keys).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from gan_lightning.diagnostics.verdicts import HEALTHY, Verdict, diagnose, keys_with_prefix, series

# A symptom hurt the run where the primary metric at the end is no better than when the symptom began:
# FID at the end >= STALL_RATIO x its value then. Below 1 so that a frozen G, whose FID moves in the
# 5th digit, is not "improving"; decided on the calibration corpus (docs/verdicts_calibration.md).
STALL_RATIO = 0.98
NOT_LEARNED_QUALITY = 0.1  # 2-D points: under this fraction of samples near a mode at the end, G has not learned the data
# Which logged values say how good a run is, in the order they are looked for, and which way they improve.
PRIMARY = (("fid/", "min"), ("modes_covered/", "max"), ("ssl/test_error", "min"))

PROBLEM, NOTE, UNGRADED = "problem", "note", "ungraded"


@dataclass(frozen=True)
class Outcome:
    """The primary metric of a run: its logged key, (G step, value) points in order, and which way it improves."""

    key: str
    points: tuple[tuple[float, float], ...]
    better: str  # "min" or "max"

    @property
    def end(self) -> tuple[float, float]:
        return self.points[-1]

    def at(self, x: float) -> tuple[float, float]:
        """The last measurement at or before G step ``x`` (the first one when none was taken before)."""
        before = [p for p in self.points if p[0] <= x]
        return before[-1] if before else self.points[0]

    def kept_improving(self, x: float, top: float | None = None) -> bool | None:
        """Whether the metric at the end is better than when a symptom began at G step ``x``; None when
        nothing was measured after that point (a single measurement cannot show a trend).

        Args:
            x: the G step the symptom began at.
            top: the best value there is (all modes covered): reaching it counts as improving.
        """
        (start_x, start), (end_x, end) = self.at(x), self.end
        if end_x <= start_x:
            return None
        if self.better == "min":
            return end < STALL_RATIO * start
        return end > start or (top is not None and end >= top)

    def describe(self, x: float) -> str:
        (start_x, start), (end_x, end) = self.at(x), self.end
        return f"{self.key} {start:.3g} at G step {int(start_x)} -> {end:.3g} at G step {int(end_x)}"


def primary(rows: Sequence[Mapping[str, Any]]) -> Outcome | None:
    """The run's primary metric (see the module docstring), or None when it logged none.

    Of several keys of one metric (``fid/lenet_5k`` and ``fid/lenet_5k_ema``), the EMA's (what samples
    come from) and then the one measured most often.
    """
    rows = list(rows)
    for prefix, better in PRIMARY:
        keys = [k for k in keys_with_prefix(rows, prefix) if prefix.endswith("/") or k == prefix]
        if not keys:
            continue
        key = max(keys, key=lambda k: (k.endswith("_ema"), len(series(rows, k)), k))
        return Outcome(key, tuple(series(rows, key)), better)
    return None


def not_learned(rows: Sequence[Mapping[str, Any]], num_modes: int | None) -> str:
    """Why G has not learned the data yet ("" if it has, or if that cannot be told).

    2-D mixtures only: modes covered 0, or fewer than NOT_LEARNED_QUALITY of the samples near a mode
    at the last measurement. An image run's FID has no absolute scale to tell this by.
    """
    for key in keys_with_prefix(list(rows), "modes_covered/"):
        modes = series(rows, key)
        quality = dict(series(rows, "high_quality/" + key.split("/", 1)[1]))
        x, covered = modes[-1]
        near = quality.get(x)
        if covered == 0 or (near is not None and near < NOT_LEARNED_QUALITY):
            of = f" of {num_modes}" if num_modes else ""
            near_text = f", {near:.1%} of the samples near a mode" if near is not None else ""
            return f"{covered:.0f}{of} modes covered{near_text} at G step {int(x)}"
    return ""


NOT_LEARNED = ("not_learned", "G has not learned the data yet",
               ("--max_epochs (more)", "--lr_g / --lr_d", "--loss nonsaturating"))


def trains_minimax(config: Mapping[str, Any]) -> bool:
    """G's own loss is the minimax cost log(1 - D(G(z))), so its vanishing gradient is G's gradient."""
    return (config.get("loss") == "minimax" and config.get("task", "gan") == "gan"
            and config.get("g_objective", "adversarial") in ("adversarial", "auto"))


def grade(v: Verdict, outcome: Outcome | None, config: Mapping[str, Any], num_modes: int | None) -> Verdict:
    """``v`` with its severity and what the outcome showed (see the module docstring)."""
    if v.harm:
        return replace(v, severity=PROBLEM)
    if v.name == "vanishing_gradient":
        if trains_minimax(config):
            return replace(v, severity=PROBLEM, outcome="G trains on the minimax cost: this is G's own gradient")
        return replace(v, severity=NOTE, outcome=f"G trains on --loss {config.get('loss', '?')}, not the minimax "
                       "cost: its vanishing is what Arjovsky & Bottou predict as D nears optimal (Thm 2.4)")
    start = min((x0 for x0, _ in v.ranges), default=0.0)
    improving = outcome.kept_improving(start, num_modes if outcome.better == "max" else None) if outcome else None
    if improving is None:
        missing = ("no quality metric was logged (--metric_every_n_epochs 0)" if outcome is None else
                   f"{outcome.key} was measured once from G step {int(start)} on: no trend to read")
        return replace(v, severity=UNGRADED, outcome=f"cannot tell whether it hurt: {missing}")
    expected = (", as Arjovsky & Bottou expect under the -log D cost" if v.name == "d_saturation"
                and config.get("loss") == "nonsaturating" else "")
    if improving:
        return replace(v, severity=NOTE, outcome=f"the run kept improving through it ({outcome.describe(start)})"
                       f"{expected}")
    return replace(v, severity=PROBLEM, outcome=f"the run stalled or worsened after it ({outcome.describe(start)})")


def assess(rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any] | None = None, num_modes: int | None = None,
           stopped: str = "") -> list[Verdict]:
    """The graded verdicts of a run: each symptom of :func:`~gan_lightning.diagnostics.verdicts.diagnose`
    with its severity, plus ``not_learned`` (a problem) when a 2-D run's samples are not near the data;
    ``[HEALTHY]`` when nothing was found.

    Args:
        rows: logged rows (column -> value), in logging order.
        config: the run's config (its ``loss`` says which cost G trains on); {} when unknown.
        num_modes: modes of the data (2-D mixtures), for mode coverage.
        stopped: why the run stopped early (a non-finite loss), if it did.
    """
    rows, config = list(rows), dict(config or {})
    outcome = primary(rows)
    found = [grade(v, outcome, config, num_modes) for v in diagnose(rows, num_modes, stopped, config.get("loss", ""))
             if v.name != HEALTHY.name]
    why = not_learned(rows, num_modes)
    if why and not any(v.severity == PROBLEM for v in found):
        title, flags = NOT_LEARNED[1], NOT_LEARNED[2]
        found.append(Verdict(NOT_LEARNED[0], title, why, flags=flags, harm=True, severity=PROBLEM,
                             outcome="no instability explains it: the run may be too short, or G too weak"))
    return found or [HEALTHY]


def status(found: Sequence[Verdict]) -> str:
    """The verdict line: the problems first; "inconclusive" when, without problems, a symptom could not be
    graded; else "healthy". Notes and ungraded symptoms follow in brackets.

    Example:
        ``healthy (notes: d_saturation)``, ``vanishing_gradient (ungraded: d_saturation)``,
        ``inconclusive (ungraded: d_saturation)``.
    """
    names = {s: ", ".join(v.name for v in found if v.severity == s)
             for s in (PROBLEM, NOTE, UNGRADED)}
    head = names[PROBLEM] or ("inconclusive" if names[UNGRADED] else "healthy")
    after = [f"{label}: {names[s]}" for s, label in ((NOTE, "notes"), (UNGRADED, "ungraded")) if names[s]]
    return f"{head} ({'; '.join(after)})" if after else head
