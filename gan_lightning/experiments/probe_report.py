"""What the frozen-generator probe writes: curves.csv, summary.json, results.md, figures, a W&B run.

The figures are those of Arjovsky & Bottou 2017 (Figs. 1-3 and Sec. 3) as PNG files. Each reads
the results of :func:`gan_lightning.experiments.probe_study.run_study`: a list of ``{"remedy",
"g_epochs", "noise_std", "rows", "summary"}``. Figures 1-3 show the first arm's probes (D trained as
the flags say) without noise (the smallest noise std when 0 was not run), one curve per generator
snapshot, on a log scale as in the paper; ``fig_noise.png`` shows every noise std of that arm, and
``fig_remedies.png`` (with more than one arm) every arm at one snapshot. matplotlib is imported
inside the functions and used through ``Figure`` objects (no pyplot state), so this works on
machines without a display.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from gan_lightning.diagnostics.probe import (
    CURVE_COLUMNS, SUMMARY_KEYS, TARGETS_MOST_NOISE, TARGETS_NO_NOISE, WINDOW, check_targets, running_mean,
)

PAPER_FIG2_ORDERS = 5  # Arjovsky & Bottou, Fig. 2: up to 5 orders of magnitude after 4,000 D iterations
ERROR_FLOOR = 1e-4  # a running D error of exactly 0 is drawn here, so it stays on the log axis
SPIKE_WINDOW, SPIKE_ORDERS = 9, 2.5  # a gradient-norm measurement this far (orders of 10) from its neighbours' median
FIGURES = ("fig1_d_error", "fig2_grad_minimax", "fig3_grad_nonsaturating", "fig_noise")
REMEDY_FIGURE = "fig_remedies"  # with more than one arm
# summary.json's entry per remedy: does D still get to accuracy 1, does the minimax gradient survive
REMEDY_SUMMARY = ("final_d_accuracy", "iters_to_accuracy_0.99", "grad_norm_minimax_first", "grad_norm_minimax_last",
                  "grad_norm_minimax_decay_orders", "grad_norm_nonsaturating_growth")


def _figure(ncols: int, nrows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), dpi=110)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _measured(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]]:
    """Iterations with a gradient-norm measurement, its mean and its std."""
    kept = [r for r in rows if r.get(key) is not None]
    return [r["iter"] for r in kept], [r[key] for r in kept], [r[f"{key}_std"] for r in kept]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def _colors(n: int, ordered: bool = True) -> list[Any]:
    """Shades of viridis for an ordered quantity (epochs, noise std), else tab10's distinct colors."""
    from matplotlib import colormaps

    if not ordered:
        return [colormaps["tab10"](i % 10) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.85) for i in range(n)]


def _d_error_and_loss(axes: Sequence[Any], results: Sequence[dict[str, Any]],
                      label: Callable[[dict[str, Any]], str]) -> None:
    colors = _colors(len(results))
    for res, color in zip(results, colors):
        rows = res["rows"]
        iters = [r["iter"] for r in rows]
        error = [max(1.0 - a, ERROR_FLOOR) for a in running_mean([r["d_accuracy"] for r in rows])]
        axes[0].plot(iters, error, color=color, label=label(res))
        axes[1].plot(iters, running_mean([r["d_loss"] for r in rows]), color=color, label=label(res))
    axes[0].set_ylabel(f"D error = 1 - accuracy (mean of {WINDOW})")
    axes[0].set_title(f"an error of 0 is drawn at {ERROR_FLOOR:g}", fontsize=8)
    axes[1].set_ylabel(f"D loss (BCE, mean of {WINDOW})")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("D iterations against the frozen G")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)


def spikes(values: Sequence[float], window: int = SPIKE_WINDOW, orders: float = SPIKE_ORDERS) -> list[bool]:
    """Which values of a log-scale curve are lone spikes: more than ``orders`` orders of magnitude
    away from the median of their ``window`` neighbours (themselves left out). A steady fall over
    many measurements (the paper's Fig. 2) is never one: its neighbours fall with it."""
    logs = [math.log10(v) if v > 0 else -math.inf for v in values]
    half = window // 2
    out = []
    for i, x in enumerate(logs):
        near = sorted(logs[max(0, i - half):i] + logs[i + 1:i + 1 + half])
        out.append(bool(near) and abs(x - near[len(near) // 2]) > orders)
    return out


def _robust_log_ylim(ax: Any, curves: Sequence[tuple[list[int], list[float], list[float], list[float], Any]]) -> None:
    """Keep lone spikes from stretching a log axis: when the spikes add more than ``SPIKE_ORDERS``
    orders of magnitude to the range of everything else, the axis ends a little past the rest and
    each spike beyond it is marked on the edge (a triangle in its curve's colour), with a note."""
    kept, beyond = [], 0
    for iters, mean, low, high, _ in curves:
        flags = spikes(mean)
        kept += [v for i, v in enumerate(low + high) if not flags[i % len(mean)] and v > 0]
    if not kept:
        return
    lo, hi = min(kept) / 1.5, max(kept) * 1.5
    auto_lo, auto_hi = ax.get_ylim()
    cut_lo = math.log10(lo) - math.log10(auto_lo) > SPIKE_ORDERS
    cut_hi = math.log10(auto_hi) - math.log10(hi) > SPIKE_ORDERS
    for iters, mean, _, _, color in curves:
        for it, m in zip(iters, mean):
            for cut, edge, out, marker in ((cut_lo, lo, m < lo, "v"), (cut_hi, hi, m > hi, "^")):
                if cut and out:
                    ax.plot([it], [edge], marker, color=color, markersize=6, clip_on=False)
                    beyond += 1
    ax.set_ylim(lo if cut_lo else auto_lo, hi if cut_hi else auto_hi)
    if beyond:
        ax.text(0.99, 0.01, f"{beyond} lone spike{'s' * (beyond != 1)} beyond the axis: \u25bc/\u25b2 on the edge",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.3")


def _grad_curves(ax: Any, results: Sequence[dict[str, Any]], cost: str, label: Callable[[dict[str, Any]], str],
                 band: bool, ordered: bool = True, legend: bool = True) -> None:
    curves = []
    for res, color in zip(results, _colors(len(results), ordered)):
        iters, mean, std = _measured(res["rows"], f"grad_norm_{cost}")
        ax.plot(iters, mean, color=color, label=label(res))
        low, high = mean, mean
        if band:
            low = [max(m - s, m * 1e-3) for m, s in zip(mean, std)]  # keep the band on the log axis
            high = [m + s for m, s in zip(mean, std)]
            ax.fill_between(iters, low, high, color=color, alpha=0.2, linewidth=0)
        curves.append((iters, mean, low, high, color))
    ax.set_yscale("log")
    _robust_log_ylim(ax, curves)
    ax.set_xlabel("D iterations against the frozen G")
    if legend:
        ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)


def _arm_label(res: dict[str, Any]) -> str:
    """``r1``, ``noise 0.2`` (the noise arm, or no remedy under noise: the std), ``r1 + noise 0.2``."""
    if res["remedy"] in ("none", "noise") and res["noise_std"]:
        return f"noise {res['noise_std']:g}"
    return f"{res['remedy']}" + (f" + noise {res['noise_std']:g}" if res["noise_std"] else "")


def _epochs(e: int) -> str:
    return f"G after {e} epoch{'s' * (e != 1)}"


def save_remedy_figure(path: Path, results: Sequence[dict[str, Any]], g_epochs: int) -> Path:
    """Every arm's probe of the G snapshot after ``g_epochs`` epochs in one figure: D's accuracy and
    G's gradient norm under both costs."""
    mine = [r for r in results if r["g_epochs"] == g_epochs]
    fig, axes = _figure(3)
    fig.set_figwidth(fig.get_figwidth() + 2.0)  # room for the legend, right of the panels
    for res, color in zip(mine, _colors(len(mine), ordered=False)):
        rows = res["rows"]
        acc = res["summary"]["final_d_accuracy"]
        axes[0, 0].plot([r["iter"] for r in rows], running_mean([r["d_accuracy"] for r in rows]), color=color,
                        label=f"{_arm_label(res)}: final acc {acc:.3f}")
    axes[0, 0].set_ylabel(f"D accuracy (mean of {WINDOW})")
    axes[0, 0].set_xlabel("D iterations against the frozen G")
    axes[0, 0].grid(True, alpha=0.3)
    _grad_curves(axes[0, 1], mine, "minimax", _arm_label, band=False, ordered=False, legend=False)
    axes[0, 1].set_ylabel("||grad E[log(1 - D(G(z)))]||")
    _grad_curves(axes[0, 2], mine, "nonsaturating", _arm_label, band=True, ordered=False, legend=False)
    axes[0, 2].set_ylabel("||grad E[-log D(G(z))]||, mean +- std")
    # one legend (the colours are the same in the three panels), outside, on no curve
    axes[0, 2].legend(*axes[0, 0].get_legend_handles_labels(), fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0)
    fig.suptitle(f"Remedies against G after {g_epochs} epochs: a fresh D trained under each")
    return _save(fig, path)


def noise_figure(results: Sequence[dict[str, Any]]):
    """``fig_noise.png`` as a matplotlib ``Figure``: one row per G snapshot, every noise std of the
    arm in ``results``: D's accuracy and G's gradient norm under both costs."""

    def at_std(res: dict[str, Any]) -> str:
        return f"noise std {res['noise_std']:g}"

    epochs = sorted({r["g_epochs"] for r in results})
    fig, axes = _figure(3, len(epochs))
    fig.set_figwidth(fig.get_figwidth() + 2.2)  # room for each row's legend, right of the row
    for row_axes, e in zip(axes, epochs):
        mine = sorted((r for r in results if r["g_epochs"] == e), key=lambda r: r["noise_std"])
        for res, color in zip(mine, _colors(len(mine))):
            rows = res["rows"]
            acc = res["summary"]["final_d_accuracy"]
            row_axes[0].plot([r["iter"] for r in rows], running_mean([r["d_accuracy"] for r in rows]),
                             color=color, label=f"noise std {res['noise_std']:g}: final D acc {acc:.3f}")
        row_axes[0].set_ylabel(f"D accuracy (mean of {WINDOW})")
        row_axes[0].set_xlabel("D iterations against the frozen G")
        row_axes[0].grid(True, alpha=0.3)
        _grad_curves(row_axes[1], mine, "minimax", at_std, band=False, legend=False)
        row_axes[1].set_ylabel("||grad E[log(1 - D(G(z)))]||")
        _grad_curves(row_axes[2], mine, "nonsaturating", at_std, band=True, legend=False)
        row_axes[2].set_ylabel("||grad E[-log D(G(z))]||, mean +- std")
        for ax, what in zip(row_axes, ("D's accuracy", "minimax cost", "-log D cost")):
            ax.set_title(f"{_epochs(e)}: {what}", fontsize=9, loc="left")
        # one legend per row (the colours are the same in its three panels), outside, on no curve
        row_axes[2].legend(*row_axes[0].get_legend_handles_labels(), fontsize=7, loc="upper left",
                           bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0)
    fig.suptitle("Instance noise on D's real and generated inputs (Sec. 3)")
    return fig


def save_figures(out_dir: str | Path, results: Sequence[dict[str, Any]],
                 overlay_epochs: int | None = None) -> list[Path]:
    """Write the probe figures as PNG files into ``out_dir`` and return their paths: the four of
    the first arm (``FIGURES``) and, with more than one arm, ``fig_remedies.png`` at the snapshot
    after ``overlay_epochs`` epochs (default: the last snapshot)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_arms = results
    results = [r for r in all_arms if r["remedy"] == all_arms[0]["remedy"]]  # the first arm: D as the flags say
    base_std = min(r["noise_std"] for r in results)
    base = sorted((r for r in results if r["noise_std"] == base_std), key=lambda r: r["g_epochs"])
    noise_note = "no noise" if base_std == 0 else f"noise std {base_std:g}"

    def at_epochs(res: dict[str, Any]) -> str:
        return _epochs(res["g_epochs"])

    paths = []

    fig, axes = _figure(2)
    _d_error_and_loss(axes[0], base, at_epochs)
    fig.suptitle(f"Fig. 1: a fresh D against a frozen G ({noise_note})")
    paths.append(_save(fig, out / "fig1_d_error.png"))

    fig, axes = _figure(1)
    _grad_curves(axes[0, 0], base, "minimax", at_epochs, band=False)
    axes[0, 0].set_ylabel("||grad E[log(1 - D(G(z)))]||")
    axes[0, 0].set_title(f"Fig. 2: minimax cost ({noise_note})", fontsize=9)
    paths.append(_save(fig, out / "fig2_grad_minimax.png"))

    fig, axes = _figure(1)
    _grad_curves(axes[0, 0], base, "nonsaturating", at_epochs, band=True)
    axes[0, 0].set_ylabel("||grad E[-log D(G(z))]||, mean +- std")
    axes[0, 0].set_title(f"Fig. 3: -log D cost ({noise_note})", fontsize=9)
    paths.append(_save(fig, out / "fig3_grad_nonsaturating.png"))

    paths.append(_save(noise_figure(results), out / "fig_noise.png"))
    if len({r["remedy"] for r in all_arms}) > 1:
        at = overlay_epochs if overlay_epochs is not None else max(r["g_epochs"] for r in results)
        paths.append(save_remedy_figure(out / f"{REMEDY_FIGURE}.png", all_arms, at))
    return paths


def write_outputs(out_dir: str | Path, results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """Write ``curves.csv`` (one line per pair and iteration) and ``summary.json``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        for res in results:
            for row in res["rows"]:
                writer.writerow({"remedy": res["remedy"], "g_epochs": res["g_epochs"], "noise_std": res["noise_std"],
                                 **{k: ("" if row.get(k) is None else row[k]) for k in CURVE_COLUMNS[3:]}})
    checkpoints = [{"remedy": r["remedy"], "g_epochs": r["g_epochs"], "noise_std": r["noise_std"], **r["summary"]}
                   for r in results]
    first = [c for c in checkpoints if c["remedy"] == checkpoints[0]["remedy"]]
    remedies: dict[str, list[dict[str, Any]]] = {}
    for c in checkpoints:
        remedies.setdefault(c["remedy"], []).append({k: c[k] for k in ("g_epochs", "noise_std", *REMEDY_SUMMARY)})
    summary = {"checkpoints": checkpoints, "targets": check_targets(first), "remedies": remedies,
               "settings": settings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _num(v: Any, fmt: str = ".3g") -> str:
    return "n/a" if v is None else format(v, fmt)


def write_report(out_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``results.md``: every probe's numbers, the targets per G snapshot and the Fig. 2 y-range."""
    from gan_lightning.config import config_from_dict, resolve

    st = summary["settings"]
    tc = st["train_config"]
    lines = [
        "# Frozen-generator probe (Arjovsky & Bottou 2017, Figs. 1-3 and Sec. 3)", "",
        f"G: {resolve(config_from_dict(tc)).arch} on {tc['dataset']} at {tc['image_size']} px, "
        f"snapshots after {', '.join(str(g['g_epochs']) for g in st['generators'])} epochs. "
        f"Probe D: the run's D with {st['probe_norm']} norm (width {st['d_width']}), Adam {st['probe_lr']:g} "
        f"({st['probe_schedule']} schedule), batch {st['batch_size']}, {st['d_iters']:,} iterations, seed {st['seed']}; "
        f"G's gradient norms every {st['grad_every']} iterations over {st['grad_batches']} batches of z. "
        f"'first'/'last': means over the first/last {WINDOW} iterations. Wall time {st['wall_seconds']:.0f} s "
        f"on {st['device']}.", "",
        "| remedy | G epochs | noise std | final D acc | iters to 0.99 | D loss first / last (drop) "
        "| minimax grad first / last (drop) | -log D grad first / last +- std (growth) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in summary["checkpoints"]:
        lines.append(
            f"| {c['remedy']} | {c['g_epochs']} | {c['noise_std']:g} | {_num(c['final_d_accuracy'], '.4f')} "
            f"| {_num(c['iters_to_accuracy_0.99'], 'd')} "
            f"| {_num(c['d_loss_first'])} / {_num(c['d_loss_last'])} ({_num(c['d_loss_drop'], '.3g')}x) "
            f"| {_num(c['grad_norm_minimax_first'])} / {_num(c['grad_norm_minimax_last'])} "
            f"({_num(c['grad_norm_minimax_drop'], '.3g')}x) "
            f"| {_num(c['grad_norm_nonsaturating_first'])} / {_num(c['grad_norm_nonsaturating_last'])} "
            f"+- {_num(c['grad_norm_nonsaturating_std_last'])} ({_num(c['grad_norm_nonsaturating_growth'], '.3g')}x) |")
    no_noise = ", ".join(f"{k} >= {v:g}" for k, v in TARGETS_NO_NOISE.items())
    most = ", ".join(f"{k} < {v:g}" for k, v in TARGETS_MOST_NOISE.items())
    lines += ["", f"Targets: without noise {no_noise}; at the largest noise std {most}.", "",
              "| G epochs | without noise | largest noise std | with it | all met |", "|---|---|---|---|---|"]
    for t in summary["targets"]:
        def words(d: dict[str, bool] | None) -> str:
            if d is None:
                return "not run"
            missed = [k for k, ok in d.items() if not ok]
            return "met" if not missed else "missed: " + ", ".join(missed)
        lines.append(f"| {t['g_epochs']} | {words(t['no_noise'])} | {_num(t['most_noise_std'], 'g')} "
                     f"| {words(t['most_noise'])} | {'yes' if t['met'] else 'no'} |")
    lines += ["", f"Fig. 2 y-range: the paper's minimax gradient falls by up to {PAPER_FIG2_ORDERS} orders of magnitude "
              "after 4,000 D iterations. Here, without noise:", ""]
    first = summary["checkpoints"][0]["remedy"]
    for c in summary["checkpoints"]:
        if c["noise_std"] == 0 and c["remedy"] == first:
            lines.append(f"- G after {c['g_epochs']} epoch{'s' * (c['g_epochs'] != 1)}: {_num(c['grad_norm_minimax_decay_orders'], '.2f')} "
                         f"orders of magnitude ({_num(c['grad_norm_minimax_first'])} -> "
                         f"{_num(c['grad_norm_minimax_last'])}) in {st['d_iters']:,} iterations")
    if len(summary["remedies"]) > 1:
        lines += ["", "Remedies (D trained under each, against the same frozen G; the figure: "
                  f"{REMEDY_FIGURE}.png). D reaching accuracy 1 and a minimax gradient falling by orders of "
                  "magnitude are what Arjovsky & Bottou's Thm 2.4 predicts without a remedy:", "",
                  "| remedy | G epochs | noise std | final D acc | minimax grad decay (orders of 10) "
                  "| -log D grad growth |", "|---|---|---|---|---|---|"]
        for name, entries in summary["remedies"].items():
            for e in entries:
                lines.append(f"| {name} | {e['g_epochs']} | {e['noise_std']:g} | {_num(e['final_d_accuracy'], '.4f')} "
                             f"| {_num(e['grad_norm_minimax_decay_orders'], '.2f')} "
                             f"| {_num(e['grad_norm_nonsaturating_growth'], '.3g')}x |")
    path = Path(out_dir) / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def log_to_wandb(summary: dict[str, Any], figures: Sequence[Path], project: str, name: str, out_dir: Path,
                 say: Callable[[str], None] = print) -> None:
    """Log the figures, the curves as a table and the summary numbers to one W&B run (job_type probe)."""
    import wandb

    from gan_lightning.trainer.loggers import wandb_mode

    mode, why = wandb_mode()
    if mode == "offline":
        say(f"W&B: {why}; logging offline under {out_dir}/wandb")
    run = wandb.init(project=project, name=name or None, dir=str(out_dir), mode=mode, job_type="probe",
                     config=summary["settings"])
    with open(out_dir / "curves.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    data = [[row[0], *(float(cell) if cell else None for cell in row[1:])] for row in rows]  # remedy, then numbers
    run.log({f"probe/{p.stem}": wandb.Image(str(p)) for p in figures}
            | {"probe/curves": wandb.Table(columns=header, data=data)})
    for entry in summary["checkpoints"]:
        remedy = "" if entry["remedy"] == "none" else f"_{entry['remedy']}"
        prefix = f"probe/g{entry['g_epochs']}_noise{entry['noise_std']:g}{remedy}"
        for key in SUMMARY_KEYS:
            if entry[key] is not None:
                run.summary[f"{prefix}/{key}"] = entry[key]
    run.finish()
