"""What ``scripts/reproduce_improved_gan.py`` writes: summary.json, results.md and figures; :func:`reproduce`,
the whole reproduction from the script's flags.

matplotlib is imported inside the functions and used through ``Figure`` objects (no pyplot
state), so this works on machines without a display.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from gan_lightning.errors import UsageError

SUMMARY_KEYS = ("semi_supervised", "mode_coverage", "ablation")


def _pct(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _num(x: float, digits: int = 2) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _pm(mean: float, std: float, fmt=_num, per_seed: Sequence[float] = ()) -> str:
    """``mean ± std``, saying when the mean leaves seeds out (a seed that logged no value, or NaN)."""
    text = f"{fmt(mean)} ± {fmt(std)}" if std and not math.isnan(std) else fmt(mean)
    kept = sum(not math.isnan(v) for v in per_seed)
    return f"{text} ({kept} of {len(per_seed)} seeds)" if kept < len(per_seed) else text


def markdown(summary: dict[str, Any], settings: dict[str, Any], elapsed_s: float) -> str:
    """results.md: one table per study, the settings and the wall time."""
    lines = ["# Improved Techniques for Training GANs: reproduction", "",
             f"Settings: `{json.dumps(settings)}`; wall time of this call {elapsed_s / 60:.1f} min "
             "(runs that had finished before are reused, not timed).", ""]
    ssl = summary.get("semi_supervised")
    if ssl:
        lines += ["## Semi-supervised classification (K+1 discriminator)", "",
                  f"{ssl['dataset']}: {ssl['labels']} labels, {ssl['unlabeled']} unlabeled training images, "
                  f"{ssl['test_size']} held-out test images; {ssl['steps']} D steps; seeds {ssl['seeds']} "
                  "(each seed draws its own labeled subset). Error of the EMA weights on the test split.", "",
                  "| model | test error (mean ± std) | per seed | per seed, live weights |", "|---|---|---|---|",
                  f"| K+1 GAN (feature matching) | {_pm(ssl['test_error'], ssl['test_error_std'], _pct, ssl['test_error_per_seed'])} | "
                  f"{', '.join(map(_pct, ssl['test_error_per_seed']))} | "
                  f"{', '.join(map(_pct, ssl.get('test_error_live_per_seed', [])))} |",
                  f"| same D, labels only | {_pm(ssl['supervised_only_error'], ssl['supervised_only_error_std'], _pct, ssl['supervised_only_per_seed'])}"
                  f" | {', '.join(map(_pct, ssl['supervised_only_per_seed']))} | "
                  f"{', '.join(map(_pct, ssl.get('supervised_only_live_per_seed', [])))} |", ""]
        spikes = next((v for k, v in ssl.items() if k.startswith("d_loss_max_after")), None)
        if "gain_per_seed" in ssl:
            lines += [f"Gain of the K+1 GAN over labels only (points of error): {_num(100 * ssl['gain'], 1)} on "
                      f"average; per seed {', '.join(_num(100 * g, 1) for g in ssl['gain_per_seed'])}.", ""]
        if spikes:
            lines += [f"Largest D loss after the first 50 steps, per seed: {', '.join(_num(v) for v in spikes)}.", ""]
    cov = summary.get("mode_coverage")
    if cov:
        lines += ["## Mode coverage (2,500 samples)", "",
                  "| data | D | modes covered | high-quality fraction | modes per seed |", "|---|---|---|---|---|"]
        for dataset, variants in cov.items():
            for variant, r in variants.items():
                lines.append(f"| {dataset} | {variant} | {_pm(r['modes'], r['modes_std'], lambda v: _num(v, 1), r['modes_per_seed'])} | "
                             f"{_pm(r['high_quality'], r['high_quality_std'], per_seed=r['high_quality_per_seed'])} | "
                             f"{', '.join(_num(m, 0) for m in r['modes_per_seed'])} |")
        lines.append("")
    rows = summary.get("ablation")
    if rows:
        lines += ["## Ablation (DCGAN on mnist5k, LeNet features)", "",
                  "| techniques | flags | FID (lower is better) | IS (higher is better) | FID per seed | "
                  "D accuracy, last epoch |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['techniques']} | `{r['flags'] or '-'}` | {_pm(r['fid'], r['fid_std'], per_seed=r.get('fid_per_seed', ()))} | "
                         f"{_pm(r['is_mean'], r['is_mean_std'], per_seed=r.get('is_mean_per_seed', ()))} | "
                         f"{', '.join(_num(v, 1) for v in r.get('fid_per_seed', []))} | "
                         f"{', '.join(_num(v, 3) for v in r.get('d_acc_last_epoch_per_seed', []))} |")
        lines.append("")
    return "\n".join(lines)


def _figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=110)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def fig_semi_supervised(ssl: dict[str, Any], path: Path) -> Path:
    """Left: test error per epoch of each seed's K+1 run, with the supervised-only errors as dashed
    lines. Right (when summary.json has it): D's largest loss in each epoch, to show spikes."""
    d_loss = ssl.get("d_loss_max_per_epoch") or {}
    fig, axes = _figure(2 if d_loss else 1)
    ax = axes[0][0]
    for i, (seed, curve) in enumerate(ssl["curves"].items()):
        ax.plot(range(1, len(curve) + 1), curve, color=f"C{i}", label=f"K+1 GAN, seed {seed}")
        ax.axhline(ssl["supervised_only_per_seed"][i], color=f"C{i}", ls="--", lw=1,
                   label=f"labels only, seed {seed}")
    ax.set(xlabel="epoch", ylabel="test error", yscale="log",
           title=f"{ssl['labels']} labels, {ssl['dataset']}")
    ax.legend(fontsize=6)
    if d_loss:
        ax = axes[0][1]
        for i, (seed, curve) in enumerate(d_loss.items()):
            ax.plot(range(1, len(curve) + 1), curve, color=f"C{i}", label=f"seed {seed}")
        ax.axhline(10, color="gray", ls=":", lw=1)
        ax.set(xlabel="epoch", ylabel="largest D loss in the epoch", yscale="log", title="D's loss")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _sample_pngs(run_dir: Path, count: int) -> list[Path]:
    """Up to ``count`` of a run's sample scatter plots (samples/*.png), evenly spaced in time.

    They are named by epoch during training and by G step at its end, so they are ordered by when
    they were written.
    """
    pngs = sorted((run_dir / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime_ns)
    if len(pngs) <= count:
        return pngs
    return [pngs[round(i * (len(pngs) - 1) / (count - 1))] for i in range(count)] if count > 1 else pngs[-1:]


def fig_mode_coverage(coverage: dict[str, Any], path: Path, num_points: int = 2500, snapshots: int = 4) -> Path:
    """The mode-hopping strip: for the first seed of each data set and variant (one row each),
    the run's sample scatter plots at a few G steps, then the final G's samples over the modes.

    A baseline that collapses shows sharp clusters on a subset of the modes (the subset may move
    between snapshots: mode hopping); one that covers the mixture shows a cluster on every mode.
    """
    import torch
    from matplotlib.image import imread

    from gan_lightning.metrics.mode_coverage import MIXTURES
    from gan_lightning.runs.folder import last_checkpoint, load
    from gan_lightning.torch_utils import eval_mode

    rows = [(dataset, variant) for dataset, variants in coverage.items() for variant in variants]
    strips = {row: _sample_pngs(Path(coverage[row[0]][row[1]]["runs"][0]), snapshots) for row in rows}
    ncols = max(len(p) for p in strips.values()) + 1
    fig, axes = _figure(ncols, len(rows), 2.6, 2.6)
    for i, (dataset, variant) in enumerate(rows):
        r = coverage[dataset][variant]
        label = f"{dataset}, {variant.replace('_', ' ')}"
        for j in range(ncols - 1):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(strips[dataset, variant]):
                ax.imshow(imread(strips[dataset, variant][j]))
                if j == 0:
                    ax.set_title(label, fontsize=8, loc="left")
        modes = MIXTURES[dataset][0]()  # (M, 2)
        generator = load(last_checkpoint(r["runs"][0])).module.generator
        z = torch.randn(num_points, generator.z_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad(), eval_mode(generator):
            points = generator(z)  # (N, 2)
        ax = axes[i][-1]
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.3)
        ax.scatter(modes[:, 0], modes[:, 1], s=12, c="red", marker="x")
        lim = float(torch.as_tensor(modes).abs().max()) * 1.4
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        ax.set_title(f"{label}: final, {r['modes_per_seed'][0]:.0f} modes", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def fig_ablation(rows: list[dict[str, Any]], path: Path) -> Path:
    """FID and IS of each ablation variant as bars (error bars: std over seeds), and the FID of
    every seed of every variant over training (has it levelled off?)."""
    fig, axes = _figure(3, 1, 5.0, 3.6)
    names = [r["techniques"] for r in rows]
    for ax, key, label in ((axes[0][0], "fid", "FID (lenet), lower is better"),
                           (axes[0][1], "is_mean", "IS (lenet), higher is better")):
        values = [r[key] for r in rows]
        errors = [r.get(f"{key}_std") or 0.0 for r in rows]
        ax.barh(range(len(rows)), values, xerr=errors, color=[f"C{i}" for i in range(len(rows))])
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
    ax = axes[0][2]
    for i, r in enumerate(rows):
        for j, curve in enumerate(r.get("fid_curves", {}).values()):
            ax.plot(curve["epoch"], curve["value"], color=f"C{i}", marker=".", lw=1,
                    label=r["techniques"] if j == 0 else None)
    ax.set(xlabel="epoch", ylabel="FID (lenet)", yscale="log", title="FID over training, every seed")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_outputs(summary: dict[str, Any], settings: dict[str, Any], out_dir: Path, elapsed_s: float) -> list[Path]:
    """summary.json (the issue's keys first), results.md and one figure per study that ran."""
    written = []
    path = out_dir / "summary.json"
    path.write_text(json.dumps({**summary, "settings": settings, "elapsed_s": round(elapsed_s, 1)}, indent=2))
    written.append(path)
    path = out_dir / "results.md"
    path.write_text(markdown(summary, settings, elapsed_s))
    written.append(path)
    if summary.get("semi_supervised"):
        written.append(fig_semi_supervised(summary["semi_supervised"], out_dir / "fig_semi_supervised.png"))
    if summary.get("mode_coverage"):
        written.append(fig_mode_coverage(summary["mode_coverage"], out_dir / "fig_mode_coverage.png"))
    if summary.get("ablation"):
        written.append(fig_ablation(summary["ablation"], out_dir / "fig_ablation.png"))
    return written


def reproduce(quick: bool, out_dir: str, only: str, accelerator: str, jobs: int, overwrite: bool) -> int:
    """Run the studies ``only`` names (comma-separated keys of ``STUDIES``) with the QUICK or FULL settings
    and write their outputs into ``out_dir``; prints results.md. The arguments are the script's flags.

    Raises:
        UsageError: an ``out_dir`` that cannot be written or holds results (without ``overwrite``), an
            unknown accelerator or study, ``jobs`` outside [0, 64] (0: one per CPU core, at most 2, on a CPU).
    """
    from gan_lightning.config import ACCELERATORS
    from gan_lightning.experiments.reproduce import FULL, QUICK, STUDIES
    from gan_lightning.trainer.outputs import check_out_dir

    out_dir = out_dir or ("runs/improved_gan_quick" if quick else "runs/improved_gan")
    check_out_dir(out_dir, results=("summary.json", "results.md"), overwrite=overwrite)
    if accelerator not in ACCELERATORS:
        raise UsageError(f"--accelerator: unknown value {accelerator!r}; valid values are: {', '.join(ACCELERATORS)}")
    if not 0 <= jobs <= 64:
        raise UsageError(f"--jobs: must be in [1, 64] (0: the default), got {jobs}")
    jobs = jobs or (min(2, os.cpu_count() or 1) if accelerator == "cpu" else 1)
    studies = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in studies if s not in STUDIES]
    if unknown or not studies:
        raise UsageError(f"--only: unknown study {unknown[0] if unknown else '(none)'}; "
                         f"choose from {', '.join(STUDIES)}")
    settings = dataclasses.replace(QUICK if quick else FULL, jobs=jobs,
                                   extra=("--accelerator", accelerator, "--logger", "csv"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    start = time.time()
    summary = {name: STUDIES[name](settings, out / "runs", say) for name in studies}
    written = write_outputs(summary, dataclasses.asdict(settings), out, time.time() - start)
    print((out / "results.md").read_text())
    say(f"wrote {', '.join(str(p) for p in written)} in {(time.time() - start) / 60:.1f} min")
    return 0
