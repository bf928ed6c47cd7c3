"""A stability verdict of a training run, read from what it logged: each verdict names its evidence
(the G-step range and the values), the flags of this toolkit that address it and the paper
section behind it.

The verdicts (thresholds and windows are the named constants below):

- ``d_saturation``: D accuracy >= SATURATED_ACC with the JSD estimate >= SATURATED_JSD (near its
  maximum log 2) at SATURATED_ROWS consecutive log steps. A D this close to optimal is what
  Arjovsky & Bottou 2017 (Thm 2.1-2.2) prove exists when the two distributions' supports are
  disjoint or lie on low-dimensional manifolds.
- ``vanishing_gradient``: G's gradient norm under the minimax cost ``log(1 - D(G(z)))`` at least
  VANISH_DROP times below its earlier peak at VANISH_ROWS consecutive measurements (Thm 2.4),
  whether or not the minimax cost is the one trained (the norm is measured as a shadow).
- ``unstable_gradient``: G's gradient norm under the ``-log D`` cost growing (median of the last
  third of the measurements >= UNSTABLE_GROWTH times that of the first third; Thm 2.6). The evidence
  also gives its scatter (the standard deviation of log10 of the ratio between consecutive
  measurements, blind to a smooth trend) in both thirds, but does not require it to grow: with G
  really frozen and D trained on, the norm grew 141x with a scatter of 0.11 in both thirds
  (docs/verdicts_calibration.md).
- ``mode_collapse``: modes covered falling by COLLAPSE_MODES_DROP of the modes from their best, or
  ending at or below COLLAPSE_MODES_FRACTION of the modes while at least COLLAPSE_QUALITY of the
  samples are near a mode (G has learned the modes it covers: a G that has not learned yet covers
  none and is not collapsed); or recall falling COLLAPSE_RECALL_DROP from its best while precision
  stays within COLLAPSE_PRECISION_HOLD of its value at recall's best (not of its own best: an early
  spike of precision at recall 0.01 is not the sample quality the collapse kept).
- ``divergence``: non-finite logged values (or a run stopped for a non-finite loss); a loss or a
  trained gradient norm of magnitude EXPLODED or more, or D's loss at EXPLODED_BCE or more under a
  sigmoid cross-entropy cost (BCE_LOSSES: a cross-entropy of 100 needs a logit 100 on the wrong side);
  the primary image metric (FID) ending DIVERGE_FID_RATIO times above its best; or D's loss swinging: its largest magnitude in the last
  third LOSS_SWING times its median magnitude over the first third and at least LOSS_SWING_MIN.
- ``healthy``: none of the above.

Pure Python on rows of logged values: :func:`diagnose` takes rows as ``metrics.csv`` holds them
(dicts of column -> value, "" for none), whatever wrote them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

SATURATED_ACC = 0.99
SATURATED_JSD = 0.9 * math.log(2.0)
SATURATED_ROWS = 5
VANISH_DROP = 100.0
VANISH_ROWS = 3
UNSTABLE_GROWTH = 10.0
UNSTABLE_MIN_POINTS = 6  # measurements needed to compare thirds
COLLAPSE_MODES_DROP = 0.25
COLLAPSE_MODES_FRACTION = 0.5
COLLAPSE_QUALITY = 0.5
COLLAPSE_RECALL_DROP = 0.2
COLLAPSE_PRECISION_HOLD = 0.1
DIVERGE_FID_RATIO = 1.5
EXPLODED = 1e4
EXPLODED_BCE = 100.0
BCE_LOSSES = ("minimax", "nonsaturating")  # D's loss is a sigmoid cross-entropy: EXPLODED_BCE applies
LOSS_SWING = 100.0
LOSS_SWING_MIN = 10.0
LOSS_MIN_POINTS = 6

X = "progress/g_steps"
NAMES = ("d_saturation", "vanishing_gradient", "unstable_gradient", "mode_collapse", "divergence")


@dataclass
class Verdict:
    """One finding: what (``name``, ``title``), from which values (``evidence``, ``ranges`` of G
    steps to shade), what to try (``flags``) and why (``paper``)."""

    name: str
    title: str
    evidence: str
    ranges: list[tuple[float, float]] = field(default_factory=list)
    flags: tuple[str, ...] = ()
    paper: str = ""
    harm: bool = False  # the rule itself saw harm to the outcome (modes lost, FID risen, a non-finite loss)
    severity: str = "problem"  # after grading by the outcome (diagnostics/outcome.py): problem, note or ungraded
    outcome: str = ""  # what the outcome showed, from the grading


HEALTHY = Verdict("healthy", "healthy", "none of the instabilities below was found in the logged values",
                  severity="none")
ADVICE: dict[str, tuple[str, tuple[str, ...], str]] = {  # name -> (title, flags, paper)
    "d_saturation": ("D saturates: it tells real from generated almost perfectly",
                     ("--noise_schedule linear --noise_std 0.1", "--label_smoothing 0.9", "--lr_d (lower)"),
                     "Arjovsky & Bottou 2017, Sec. 2.1 (Thm 2.1-2.2) and Sec. 3 (instance noise, Thm 3.2)"),
    "vanishing_gradient": ("G's gradient vanishes under the minimax cost",
                           ("--loss nonsaturating", "--noise_schedule adaptive", "--loss wasserstein_gp"),
                           "Arjovsky & Bottou 2017, Sec. 2.2.1 (Thm 2.4)"),
    "unstable_gradient": ("G's gradient under the -log D cost grows and scatters",
                          ("--noise_schedule linear --noise_std 0.1", "--loss wasserstein_gp", "--label_smoothing 0.9"),
                          "Arjovsky & Bottou 2017, Sec. 2.2.2 (Thm 2.6) and Sec. 3"),
    "mode_collapse": ("mode collapse: G covers fewer of the data's modes",
                      ("--minibatch_discrimination", "--g_objective feature_matching", "--loss wasserstein_gp"),
                      "Salimans et al. 2016, Sec. 3.1-3.2; Arjovsky & Bottou 2017, Sec. 2.2.2"),
    "divergence": ("divergence or oscillation",
                   ("--lr_d / --lr_g (lower)", "--historical_averaging 1e-3", "--loss wasserstein_gp",
                    "--on_nonfinite skip"),
                   "Salimans et al. 2016, Sec. 3.3 (historical averaging)"),
}


def _verdict(name: str, evidence: str, ranges: list[tuple[float, float]], harm: bool = False) -> Verdict:
    title, flags, paper = ADVICE[name]
    return Verdict(name, title, evidence, ranges, flags, paper, harm=harm)


# -- reading rows -----------------------------------------------------------------------------
def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def series(rows: Iterable[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """(G step, value) of every row that logged ``key``, in logging order; the G step is the row's
    ``progress/g_steps``, else its ``step`` + 1 (older runs: one G step per logged batch)."""
    out = []
    for row in rows:
        value = _float(row.get(key))
        if value is None:
            continue
        x = _float(row.get(X))
        if x is None:
            step = _float(row.get("step"))
            x = step + 1 if step is not None else float(len(out))
        out.append((x, value))
    return out


def keys_with_prefix(rows: list[Mapping[str, Any]], prefix: str) -> list[str]:
    """Logged columns starting with ``prefix`` that hold at least one value, sorted."""
    return sorted({k for row in rows for k, v in row.items() if k.startswith(prefix) and v not in ("", None)})


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _step(x: float) -> str:
    return f"G step {int(x)}"


# -- the verdicts -----------------------------------------------------------------------------
def d_saturation(rows: list[Mapping[str, Any]]) -> Verdict | None:
    acc, jsd = dict(series(rows, "d/acc")), dict(series(rows, "d/jsd_estimate"))
    run: list[float] = []
    found: list[tuple[float, float]] = []
    xs = sorted(set(acc) & set(jsd))
    for x in xs + [math.inf]:
        if x in acc and acc[x] >= SATURATED_ACC and jsd[x] >= SATURATED_JSD:
            run.append(x)
            continue
        if len(run) >= SATURATED_ROWS:
            found.append((run[0], run[-1]))
        run = []
    if not found:
        return None
    longest = max(found, key=lambda r: r[1] - r[0])
    inside = [x for x in xs if longest[0] <= x <= longest[1]]
    return _verdict("d_saturation", f"D accuracy {_fmt(min(acc[x] for x in inside))}-{_fmt(max(acc[x] for x in inside))} "
                    f"and JSD estimate {_fmt(min(jsd[x] for x in inside))}-{_fmt(max(jsd[x] for x in inside))} "
                    f"(log 2 = {math.log(2):.3f}) over {_step(longest[0])}-{int(longest[1])} "
                    f"({len(inside)} log steps)", found)


def vanishing_gradient(rows: list[Mapping[str, Any]]) -> Verdict | None:
    peak, peak_x, start, run = 0.0, 0.0, (0.0, 0.0), []
    found: list[tuple[tuple[float, float], list[tuple[float, float]]]] = []  # ((peak x, peak), the run below it)
    for x, v in series(rows, "grad_norm/g_minimax") + [(math.inf, math.nan)]:
        if v > peak:
            peak, peak_x = v, x
        if peak > 0 and 0 <= v <= peak / VANISH_DROP:
            start = start if run else (peak_x, peak)
            run.append((x, v))
            continue
        if len(run) >= VANISH_ROWS:
            found.append((start, run))
        run = []
    if not found:
        return None
    ranges = [(start[0], run[-1][0]) for start, run in found]
    (x0, top), run = found[0]
    low = min(v for _, v in run)
    drop = f"{top / low:.0f}x" if low > 0 else "to zero"
    return _verdict("vanishing_gradient", f"G's minimax gradient norm fell from {_fmt(top)} ({_step(x0)}) to "
                    f"{_fmt(low)} by {_step(run[-1][0])}: {drop} (threshold {VANISH_DROP:.0f}x, held at "
                    f"{len(run)} measurements)", ranges)


def _thirds(points: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    n = len(points) // 3
    return points[:n], points[-n:]


def _scatter(points: list[tuple[float, float]]) -> float:
    """Standard deviation of log10(v[i+1] / v[i]): how much consecutive measurements jump."""
    return statistics.pstdev([math.log10(b / a) for (_, a), (_, b) in zip(points, points[1:])])


def nonsaturating_thirds(rows: Iterable[Mapping[str, Any]]) -> tuple[list[tuple[float, float]], list[tuple[float, float]],
                                                                    float, float] | None:
    """The first and last thirds of G's -log D gradient norms (finite and > 0; (G step, value) points), and
    the median of each; None with fewer than UNSTABLE_MIN_POINTS measurements."""
    points = [(x, v) for x, v in series(rows, "grad_norm/g_nonsaturating") if v > 0 and math.isfinite(v)]
    if len(points) < UNSTABLE_MIN_POINTS:
        return None
    first, last = _thirds(points)
    return first, last, statistics.median(v for _, v in first), statistics.median(v for _, v in last)


def unstable_gradient(rows: list[Mapping[str, Any]]) -> Verdict | None:
    thirds = nonsaturating_thirds(rows)
    if thirds is None:
        return None
    first, last, m0, m1 = thirds
    s0, s1 = _scatter(first), _scatter(last)
    if m1 < UNSTABLE_GROWTH * m0:
        return None
    return _verdict("unstable_gradient", f"G's -log D gradient norm grew from a median of {_fmt(m0)} "
                    f"({_step(first[0][0])}-{int(first[-1][0])}) to {_fmt(m1)} ({_step(last[0][0])}-{int(last[-1][0])}): "
                    f"{m1 / m0:.0f}x, its scatter (std of log10 of consecutive ratios) {s0:.2f} -> {s1:.2f}",
                    [(last[0][0], last[-1][0])])


def mode_collapse(rows: list[Mapping[str, Any]], num_modes: int | None = None) -> Verdict | None:
    for key in keys_with_prefix(rows, "modes_covered/"):
        points = series(rows, key)
        best_x, best = max(points, key=lambda p: p[1])
        end_x, end = points[-1]
        if num_modes and best - end >= COLLAPSE_MODES_DROP * num_modes:
            return _verdict("mode_collapse", f"modes covered fell from {best:.0f} ({_step(best_x)}) to {end:.0f} "
                            f"({_step(end_x)}) of {num_modes}", [(best_x, end_x)], harm=True)
        quality = dict(series(rows, "high_quality/" + key.split("/", 1)[1])).get(end_x)
        if num_modes and end <= COLLAPSE_MODES_FRACTION * num_modes and (quality or 0) >= COLLAPSE_QUALITY:
            return _verdict("mode_collapse", f"{end:.0f} of {num_modes} modes covered at {_step(end_x)} with "
                            f"{quality:.0%} of the samples near a mode (best {best:.0f} modes at {_step(best_x)})",
                            [(points[0][0], end_x)], harm=True)
    for key in keys_with_prefix(rows, "recall/"):
        recall, precision = series(rows, key), dict(series(rows, "precision/" + key.split("/", 1)[1]))
        best_x, best = max(recall, key=lambda p: p[1])
        end_x, end = recall[-1]
        if best - end < COLLAPSE_RECALL_DROP or end_x not in precision or best_x not in precision:
            continue
        if precision[end_x] >= precision[best_x] - COLLAPSE_PRECISION_HOLD:  # held since recall's best
            return _verdict("mode_collapse", f"recall fell from {best:.2f} ({_step(best_x)}) to {end:.2f} "
                            f"({_step(end_x)}) while precision held ({precision[best_x]:.2f} -> "
                            f"{precision[end_x]:.2f})", [(best_x, end_x)], harm=True)
    return None


def divergence(rows: list[Mapping[str, Any]], stopped: str = "", loss: str = "") -> Verdict | None:
    if stopped:
        last = max((x for x, _ in series(rows, "loss/d")), default=0.0)
        return _verdict("divergence", f"the run stopped: {stopped}", [(last, last)], harm=True)
    for key in ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g"):
        bad = [(x, v) for x, v in series(rows, key) if not math.isfinite(v)]
        if bad:
            return _verdict("divergence", f"{key} = {bad[0][1]} at {_step(bad[0][0])} ({len(bad)} non-finite values)",
                            [(bad[0][0], bad[-1][0])], harm=True)
    limits = [(key, EXPLODED) for key in ("loss/d", "loss/g", "grad_norm/d", "grad_norm/g")]
    if loss in BCE_LOSSES:
        limits.insert(0, ("loss/d", EXPLODED_BCE))
    for key, limit in limits:
        big = [(x, v) for x, v in series(rows, key) if abs(v) >= limit]
        if big:
            x, top = max(big, key=lambda p: abs(p[1]))
            bce = f", a sigmoid cross-entropy (--loss {loss})" if limit == EXPLODED_BCE else ""
            return _verdict("divergence", f"{key} reached {_fmt(top)} at {_step(x)} ({len(big)} log steps at "
                            f"|value| >= {limit:.0e}{bce})", [(big[0][0], big[-1][0])], harm=True)
    for key in keys_with_prefix(rows, "fid/"):
        points = series(rows, key)
        best_x, best = min(points, key=lambda p: p[1])
        end_x, end = points[-1]
        if best > 0 and end >= DIVERGE_FID_RATIO * best and end_x > best_x:
            return _verdict("divergence", f"{key} rose from its best {best:.3g} ({_step(best_x)}) to {end:.3g} "
                            f"({_step(end_x)}): {end / best:.1f}x", [(best_x, end_x)], harm=True)
    points = series(rows, "loss/d")
    if len(points) >= LOSS_MIN_POINTS:
        first, last = _thirds(points)
        base = statistics.median(abs(v) for _, v in first)
        x, top = max(last, key=lambda p: abs(p[1]))
        if abs(top) >= max(LOSS_SWING * base, LOSS_SWING_MIN):
            return _verdict("divergence", f"D's loss swung to {_fmt(top)} at {_step(x)}, {abs(top) / base:.0f}x its "
                            f"early median {_fmt(base)}", [(last[0][0], last[-1][0])])
    return None


def diagnose(rows: Iterable[Mapping[str, Any]], num_modes: int | None = None, stopped: str = "",
             loss: str = "") -> list[Verdict]:
    """Every verdict that holds for a run's logged ``rows``, or ``[HEALTHY]``.

    Args:
        rows: logged rows (column -> value; "" or missing for none), in logging order.
        num_modes: modes of the data (2-D mixtures: 8 for ring, 25 for grid), for mode coverage.
        stopped: why the run stopped early (a non-finite loss), if it did.
        loss: the run's ``--loss`` (D's loss under a sigmoid cross-entropy has a scale of its own).
    """
    rows = list(rows)
    found = [d_saturation(rows), vanishing_gradient(rows), unstable_gradient(rows), mode_collapse(rows, num_modes),
             divergence(rows, stopped, loss)]
    return [v for v in found if v is not None] or [HEALTHY]
