"""A run's diagnosis on disk: its verdicts (:mod:`gan_lightning.diagnostics.verdicts`), graded by the
run's outcome (:mod:`gan_lightning.diagnostics.outcome`), as ``diagnosis.md`` and a one-page
``diagnosis.png`` of the logged values behind them, the flagged G-step ranges shaded.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from gan_lightning.diagnostics import verdicts as V
from gan_lightning.diagnostics.outcome import NOTE, PROBLEM, UNGRADED, assess, status
from gan_lightning.diagnostics.verdicts import Verdict, keys_with_prefix, series
from gan_lightning.errors import UsageError

MD, PNG = "diagnosis.md", "diagnosis.png"
COLORS = {"d_saturation": "tab:orange", "vanishing_gradient": "tab:red", "unstable_gradient": "tab:purple",
          "mode_collapse": "tab:brown", "divergence": "black", "not_learned": "tab:gray"}


def read_rows(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of ``<run_dir>/metrics.csv`` (column -> text, "" for none), in logging order: the one
    reader of a run's logged values (compare_runs, diagnose, sweeps, reproductions).

    Raises:
        FileNotFoundError: no metrics.csv in ``run_dir``.
        UsageError: ``<run_dir>: metrics.csv is not a CSV text file; <why>``: not UTF-8 text, or not CSV.
    """
    return read_table(run_dir)[1]


def read_table(run_dir: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """The columns of ``<run_dir>/metrics.csv`` in file order (a file with a header and no rows has them
    too) and its rows, as :func:`read_rows` (which raises the same)."""
    try:
        text = (Path(run_dir) / "metrics.csv").read_bytes().decode("utf-8")
        if "\x00" in text:  # text files hold none; csv reads them as data since Python 3.11
            why = f"a NUL byte at offset {text.index(chr(0))}"
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except UnicodeDecodeError as e:
        why = f"byte 0x{e.object[e.start]:02x} at offset {e.start} is not UTF-8"
    except csv.Error as e:  # a field over csv's size limit
        why = str(e)
    raise UsageError(f"{run_dir}: metrics.csv is not a CSV text file; {why}")


DIAGNOSTIC_KEYS = ("d/acc", "d/jsd_estimate", "grad_norm/d", "grad_norm/g", "grad_norm/g_minimax",
                   "grad_norm/g_nonsaturating")  # what --diagnostics logs


def has_diagnostics(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the rows hold what ``--diagnostics`` logs (D accuracy, gradient norms): without it
    (``--diagnostics false``) there is no verdict to give."""
    return any(series(rows, key) for key in DIAGNOSTIC_KEYS)


def summary_line(found: Sequence[Verdict]) -> str:
    """The console line's verdict part: the problems first, ``healthy`` when there are only notes
    (:func:`~gan_lightning.diagnostics.outcome.status`)."""
    return status(found)


def summary_values(found: Sequence[Verdict]) -> dict[str, Any]:
    """``diagnosis/*`` keys of a run summary: the verdict line, 1/0 for every verdict that is a problem
    (a note is 0), and the notes by name."""
    problems = {v.name for v in found if v.severity == PROBLEM}
    notes = ", ".join(v.name for v in found if v.severity in (NOTE, UNGRADED))
    return {"diagnosis/verdict": summary_line(found), "diagnosis/notes": notes,
            **{f"diagnosis/{n}": int(n in problems) for n in V.NAMES}}


SECTIONS = ((PROBLEM, "Problems"), (UNGRADED, "Not graded"), (NOTE, "Notes: symptoms that did not hurt the run"))


def markdown(found: Sequence[Verdict], source: str) -> str:
    """The text of diagnosis.md: the problems first, then the symptoms that could not be graded and the
    notes, each with its evidence, what the outcome showed, what to try and the paper behind it."""
    lines = [f"# Diagnosis of {source}", "", f"**Verdict: {summary_line(found)}**", ""]
    if all(v.severity == "none" for v in found):
        lines += [f"- {found[0].evidence}.", ""]
    for severity, heading in SECTIONS:
        shown = [v for v in found if v.severity == severity]
        if shown:
            lines += [f"## {heading}", ""]
        for v in shown:
            lines += [f"### {v.title} (`{v.name}`)", "", f"- **Evidence:** {v.evidence}."]
            if v.outcome:
                lines.append(f"- **Outcome:** {v.outcome}.")
            if v.flags and severity != NOTE:
                lines.append("- **Flags that address it:** " + ", ".join(f"`{f}`" for f in v.flags) + ".")
            if v.paper:
                lines.append(f"- **Why:** {v.paper}.")
            lines.append("")
    lines += ["## Thresholds", "", "Named constants of `gan_lightning/diagnostics/verdicts.py` and `outcome.py`:", ""]
    from gan_lightning.diagnostics import outcome as O

    for module, names in ((V, ("SATURATED_ACC", "SATURATED_JSD", "SATURATED_ROWS", "VANISH_DROP", "VANISH_ROWS",
                               "UNSTABLE_GROWTH", "COLLAPSE_MODES_DROP", "COLLAPSE_MODES_FRACTION", "COLLAPSE_QUALITY",
                               "COLLAPSE_RECALL_DROP", "COLLAPSE_PRECISION_HOLD", "DIVERGE_FID_RATIO", "EXPLODED", "EXPLODED_BCE",
                               "LOSS_SWING", "LOSS_SWING_MIN")),
                          (O, ("STALL_RATIO", "NOT_LEARNED_QUALITY"))):
        lines += [f"- `{name}` = {getattr(module, name):.4g}" for name in names]
    return "\n".join(lines) + "\n"


def merged(ranges: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping (start, end) ranges joined, sorted."""
    out: list[tuple[float, float]] = []
    for x0, x1 in sorted(ranges):
        if out and x0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], x1))
        else:
            out.append((x0, x1))
    return out


@dataclass(frozen=True)
class Panel:
    """One panel of diagnosis.png: the logged keys it draws and how its y-axis reads."""

    title: str
    keys: tuple[str, ...]
    ylabel: str
    log: bool = False
    ylim: tuple[float, float] | None = None  # fixed range (a fraction: 0..1, modes: 0..n)


JSD_FLOOR = -1.0  # JSD estimates below this (a D far worse than chance, a blow-up) are drawn at it
_OFF_WHEN_ZERO = ("noise/", "grad_norm/")  # 0 throughout means "not on" (a run without noise), not a value
FRACTIONS = ("precision", "recall", "coverage", "high_quality")  # metrics in 0..1, drawn on one 0..1 axis


def _panels(rows: Sequence[Mapping[str, Any]], num_modes: int | None = None) -> list[Panel]:
    """The panels that have values. Values on different scales get their own axis: FID (tens to
    hundreds), the 0..1 fractions (precision, recall, coverage, high-quality samples) and the modes
    covered (0..num_modes)."""
    logged = list(rows)

    def shown(key: str) -> bool:
        values = [v for _, v in series(rows, key)]
        return bool(values) and (any(v != 0 for v in values) or not key.startswith(_OFF_WHEN_ZERO))

    fraction_names = [n for n in FRACTIONS if keys_with_prefix(logged, f"{n}/")]
    fractions = [k for n in fraction_names for k in keys_with_prefix(logged, f"{n}/")]
    modes = tuple(keys_with_prefix(logged, "modes_covered/"))
    # 0..all modes; a run folder without its config (no known data set): 0..the most covered, at least 1
    most = num_modes or max([1.0, *(v for k in modes for _, v in series(rows, k) if math.isfinite(v))])
    modes_ylabel = f"modes covered (of {num_modes})" if num_modes else "modes covered"
    panels = [
        Panel("losses", ("loss/d", "loss/g"), "loss"),
        Panel(f"D accuracy and JSD estimate = (log 4 - D's BCE) / 2, which is < 0 while D is worse than chance",
              ("d/acc", "d/jsd_estimate"), "accuracy, JSD estimate"),
        Panel("G's gradient norm under both costs", ("grad_norm/g_minimax", "grad_norm/g_nonsaturating"),
              "gradient norm", log=True),
        Panel("instance noise sigma", ("noise/sigma",), "sigma"),
        Panel("FID (lower is better)", tuple(keys_with_prefix(logged, "fid/")), "FID"),
        Panel(f"{', '.join(fraction_names)} (fractions, 0..1, higher is better)", tuple(fractions), "fraction",
              ylim=(0.0, 1.0)),
        Panel("modes covered (higher is better)", modes, modes_ylabel, ylim=(0.0, float(most))),
    ]
    out = []
    for panel in panels:
        keys = tuple(k for k in panel.keys if shown(k))
        if keys:
            out.append(Panel(panel.title, keys, panel.ylabel, panel.log, panel.ylim))
    return out


def _draw(ax: Any, panel: Panel, rows: Sequence[Mapping[str, Any]]) -> None:
    """One panel's lines; its legend outside the axes on the right, so it never covers a curve."""
    low = math.inf
    for key in panel.keys:
        points = [(x, v) for x, v in series(rows, key) if math.isfinite(v) and (v > 0 or not panel.log)]
        if not points:
            continue
        xs, ys = zip(*points)
        if key == "d/jsd_estimate" and min(ys) < JSD_FLOOR:
            # a blow-up sends the estimate to -1e8, which would flatten D's accuracy beside it
            clipped = [x for x, y in points if y < JSD_FLOOR]
            ax.plot(clipped, [JSD_FLOOR] * len(clipped), "v", color="tab:orange", ms=4, clip_on=False)
            ax.text(0.99, JSD_FLOOR / 2, f"JSD estimate < {JSD_FLOOR:g} at {len(clipped)} of {len(ys)} points "
                    f"(min {min(ys):.3g}): drawn as \u25bc at {JSD_FLOOR:g}", transform=ax.get_yaxis_transform(),
                    ha="right", va="center", fontsize=7, color="tab:orange")  # at y = JSD_FLOOR / 2: below D's accuracy
            ys = tuple(max(y, JSD_FLOOR) for y in ys)
        low = min(low, *ys)
        ax.plot(xs, ys, label=key, lw=1, marker="." if len(points) < 30 else None, clip_on=panel.ylim is None)
    if panel.log:
        ax.set_yscale("log")
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    elif "d/acc" in panel.keys or "d/jsd_estimate" in panel.keys:
        ax.set_ylim(min(low, 0.0) - 0.05, 1.05)
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:  # every value non-finite (or not > 0 on a log axis): say so instead of an empty legend
        ax.text(0.5, 0.5, "no finite values to draw: " + ", ".join(panel.keys), transform=ax.transAxes,
                ha="center", va="center", fontsize=8, color="0.4")


def draw(rows: Sequence[Mapping[str, Any]], found: Sequence[Verdict], source: str, num_modes: int | None = None):
    """The one-page figure as a matplotlib ``Figure``: one panel per group of logged values against
    G steps, each verdict's G-step ranges shaded in its colour.

    Args:
        rows: the run's logged rows (column -> value).
        found: the verdicts.
        source: the run's name, in the title.
        num_modes: modes of a 2-D mixture (ring: 8, grid: 25): the range of the modes-covered axis.
    """
    # A bare Figure, no pyplot: no global state, nothing on the console, and no GUI backend to pick.
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = _panels(rows, num_modes)
    fig = Figure(figsize=(10, 2.2 * max(len(panels), 1) + 0.6), dpi=90)
    axes = fig.subplots(len(panels) or 1, 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        _draw(ax, panel, rows)
        for v in found:
            for x0, x1 in merged(v.ranges):
                ax.axvspan(x0, max(x1, x0 + 1), color=COLORS.get(v.name, "grey"), alpha=0.15, lw=0)
    axes[-1].set_xlabel("G steps")
    shaded = [v for v in found if v.ranges]
    handles = [Rectangle((0, 0), 1, 1, color=COLORS.get(v.name, "grey"), alpha=0.3) for v in shaded]
    if handles:
        fig.legend(handles, [v.name for v in shaded], loc="upper right", fontsize=8, ncol=len(handles))
    fig.suptitle(f"{source}: {summary_line(found)}", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def figure(rows: Sequence[Mapping[str, Any]], found: Sequence[Verdict], path: str | Path, source: str,
           num_modes: int | None = None) -> Path:
    """Write :func:`draw`'s figure as a PNG file; return its path."""
    draw(rows, found, source, num_modes).savefig(path)
    return Path(path)


def write_diagnosis(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, source: str, num_modes: int | None = None,
                    stopped: str = "", config: Mapping[str, Any] | None = None) -> list[Verdict]:
    """Diagnose ``rows`` (graded with the run's ``config``) and write ``diagnosis.md`` and ``diagnosis.png``
    into ``out_dir``; returns the verdicts."""
    found = assess(rows, config, num_modes=num_modes, stopped=stopped)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MD).write_text(markdown(found, source))
    figure(rows, found, out / PNG, source, num_modes=num_modes)
    return found
