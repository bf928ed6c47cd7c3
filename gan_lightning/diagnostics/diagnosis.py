"""A run's diagnosis on disk: its verdicts (:mod:`gan_lightning.diagnostics.verdicts`) as
``diagnosis.md`` and a one-page ``diagnosis.png`` of the logged values behind them, the flagged
G-step ranges shaded.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from gan_lightning.diagnostics import verdicts as V
from gan_lightning.diagnostics.verdicts import Verdict, diagnose, keys_with_prefix, series
from gan_lightning.errors import UsageError

MD, PNG = "diagnosis.md", "diagnosis.png"
COLORS = {"d_saturation": "tab:orange", "vanishing_gradient": "tab:red", "unstable_gradient": "tab:purple",
          "mode_collapse": "tab:brown", "divergence": "black"}


def read_rows(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of ``<run_dir>/metrics.csv`` (column -> text, "" for none), in logging order: the one
    reader of a run's logged values (compare_runs, diagnose, sweeps, reproductions).

    Raises:
        FileNotFoundError: no metrics.csv in ``run_dir``.
        UsageError: ``<run_dir>: metrics.csv is not a CSV text file; <why>``: not UTF-8 text, or not CSV.
    """
    try:
        text = (Path(run_dir) / "metrics.csv").read_bytes().decode("utf-8")
        if "\x00" in text:  # text files hold none; csv reads them as data since Python 3.11
            why = f"a NUL byte at offset {text.index(chr(0))}"
        else:
            return list(csv.DictReader(io.StringIO(text, newline="")))
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
    """``healthy`` or the verdict names, comma-separated: the one console line's verdict part."""
    return ", ".join(v.name for v in found)


def summary_values(found: Sequence[Verdict]) -> dict[str, Any]:
    """``diagnosis/*`` keys of a run summary: the verdict line, and 1/0 for every verdict."""
    names = {v.name for v in found}
    return {"diagnosis/verdict": summary_line(found), **{f"diagnosis/{n}": int(n in names) for n in V.NAMES}}


def markdown(found: Sequence[Verdict], source: str) -> str:
    """The text of diagnosis.md: each verdict with its evidence, what to try and the paper behind it."""
    lines = [f"# Diagnosis of {source}", "", f"**Verdict: {summary_line(found)}**", ""]
    for v in found:
        lines += [f"## {v.title} (`{v.name}`)", "", f"- **Evidence:** {v.evidence}."]
        if v.flags:
            lines.append("- **Flags that address it:** " + ", ".join(f"`{f}`" for f in v.flags) + ".")
        if v.paper:
            lines.append(f"- **Why:** {v.paper}.")
        lines.append("")
    lines += ["## Thresholds", "", "Named constants of `gan_lightning/diagnostics/verdicts.py`:", ""]
    for name in ("SATURATED_ACC", "SATURATED_JSD", "SATURATED_ROWS", "VANISH_DROP", "VANISH_ROWS", "UNSTABLE_GROWTH",
                 "COLLAPSE_MODES_DROP", "COLLAPSE_MODES_FRACTION", "COLLAPSE_QUALITY", "COLLAPSE_RECALL_DROP",
                 "COLLAPSE_PRECISION_HOLD", "DIVERGE_FID_RATIO", "EXPLODED", "LOSS_SWING", "LOSS_SWING_MIN"):
        value = getattr(V, name)
        lines.append(f"- `{name}` = {value:.4g}")
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


def _panels(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str], bool]]:
    """(title, keys, log y) of each panel that has values."""
    quality = [k for k in keys_with_prefix(list(rows), "fid/")] + keys_with_prefix(list(rows), "modes_covered/")
    quality += keys_with_prefix(list(rows), "precision/") + keys_with_prefix(list(rows), "recall/")
    panels = [("losses", ["loss/d", "loss/g"], False), ("D accuracy and JSD estimate", ["d/acc", "d/jsd_estimate"], False),
              ("G's gradient norm under both costs", ["grad_norm/g_minimax", "grad_norm/g_nonsaturating"], True),
              ("instance noise sigma", ["noise/sigma"], False), ("sample quality", quality, False)]
    def shown(key: str) -> bool:  # logged, and not 0 throughout (sigma of a run without noise)
        return any(v != 0 for _, v in series(rows, key)) or key.startswith(("modes_covered/", "loss/"))

    return [(t, [k for k in keys if shown(k)], log) for t, keys, log in panels if any(shown(k) for k in keys)]


def figure(rows: Sequence[Mapping[str, Any]], found: Sequence[Verdict], path: str | Path, source: str) -> Path:
    """Write the one-page figure: one panel per group of logged values against G steps, flagged ranges shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(rows)
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(8, 2.2 * max(len(panels), 1) + 0.6), sharex=True,
                             squeeze=False)
    for ax, (title, keys, log) in zip(axes[:, 0], panels):
        for key in keys:
            points = [(x, v) for x, v in series(rows, key) if math.isfinite(v) and (v > 0 or not log)]
            if points:
                ax.plot(*zip(*points), label=key, lw=1, marker="." if len(points) < 30 else None)
        if log:
            ax.set_yscale("log")
        for v in found:
            for x0, x1 in merged(v.ranges):
                ax.axvspan(x0, max(x1, x0 + 1), color=COLORS.get(v.name, "grey"), alpha=0.15, lw=0)
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("G steps")
    shaded = [v for v in found if v.ranges]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS.get(v.name, "grey"), alpha=0.3) for v in shaded]
    if handles:
        fig.legend(handles, [v.name for v in shaded], loc="upper right", fontsize=8, ncol=len(handles))
    fig.suptitle(f"{source}: {summary_line(found)}", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def write_diagnosis(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, source: str, num_modes: int | None = None,
                    stopped: str = "") -> list[Verdict]:
    """Diagnose ``rows`` and write ``diagnosis.md`` and ``diagnosis.png`` into ``out_dir``; returns the verdicts."""
    found = diagnose(rows, num_modes=num_modes, stopped=stopped)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MD).write_text(markdown(found, source))
    figure(rows, found, out / PNG, source)
    return found
