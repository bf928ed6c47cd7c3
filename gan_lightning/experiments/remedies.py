"""The stability remedies side by side: what ``scripts/compare_remedies.py`` runs.

For every seed and every ``--remedy`` preset (:data:`gan_lightning.config.REMEDIES`) one ordinary
training run of ``scripts/train.py`` (``reproduce.train_run``, its own folder under
``<out_dir>/runs``) on mnist5k with a small DCGAN and the non-saturating loss, scored at its end
by FID in the shipped LeNet feature space; D's accuracy over the last logged steps is read back
from its metrics.csv. Then, per seed, the frozen-generator probe
(:mod:`gan_lightning.diagnostics.probe`) against the G of that seed's run without a remedy: a
fresh D trained with each remedy in turn, so that only D's training differs between them. The
probe reports whether D still reaches accuracy 1 and how many orders of magnitude the minimax
gradient of G falls (Arjovsky & Bottou 2017, Thm 2.4).

The annealed remedies (instance noise, Roth et al.'s gamma) anneal over the whole training run.
The probe has no G steps, so there they act at their starting strength: noise std 0.2, gamma 2.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gan_lightning.config.flags import REMEDIES
from gan_lightning.errors import UsageError
from gan_lightning.experiments.reproduce import mean_std, run_jobs, train_run

# The networks and data of probe_discriminator.py --quick; FID only, at the end of the run.
BASE_FLAGS = ("--dataset", "mnist5k", "--image_size", "28", "--g_width", "32", "--d_width", "32",
              "--loss", "nonsaturating", "--metric_extractor", "lenet-mnist", "--metrics", "fid",
              "--accelerator", "cpu", "--devices", "1")
FID_KEY = "fid/lenet_5k"
ACC_KEY = "d/acc"
ACC_WINDOW = 10  # logged values of d/acc averaged into the final D accuracy


@dataclass(frozen=True)
class Settings:
    """How long the comparison trains and probes."""

    epochs: int
    seeds: tuple[int, ...]
    remedies: tuple[str, ...]
    d_iters: int  # probe: D iterations
    grad_every: int  # probe: D iterations between gradient-norm measurements
    grad_batches: int  # probe: batches of z per measurement
    max_steps: int = -1  # G steps per run (-1: the epochs); a smoke test's limit
    jobs: int = 1


# probe_discriminator.py --quick: G after 10 epochs (620 G steps), 1,000 probe iterations
QUICK = Settings(epochs=10, seeds=(0, 1, 2), remedies=tuple(REMEDIES), d_iters=1000, grad_every=25, grad_batches=2)


def steps_per_epoch(batch_size: int = 64) -> int:
    """G steps in one epoch of mnist5k's training split (the loader drops the last partial batch)."""
    from gan_lightning.build import build_datamodule
    from gan_lightning.config import parse_args, resolve

    cfg, _ = parse_args([*BASE_FLAGS, "--batch_size", str(batch_size)])
    return len(build_datamodule(resolve(cfg)).dataset("train")) // batch_size


def run_flags(settings: Settings, remedy: str, seed: int, total_steps: int) -> list[str]:
    """train.py flags of one run: the base, the remedy, its annealing over the whole run, the seed."""
    return [*BASE_FLAGS, "--remedy", remedy, "--seed", str(seed), "--max_epochs", str(settings.epochs),
            "--max_steps", str(settings.max_steps), "--metric_every_n_epochs", str(settings.epochs),
            "--noise_anneal_steps", str(total_steps), "--roth_anneal_steps", str(total_steps)]


def run_name(remedy: str, seed: int) -> str:
    return f"{remedy}-seed{seed}"


def train_all(settings: Settings, out_dir: Path, say: Callable[[str], None] = print) -> dict[tuple[str, int], Path]:
    """Train every (remedy, seed) run (finished ones are reused); their folders by (remedy, seed)."""
    total = settings.epochs * steps_per_epoch() if settings.max_steps < 0 else settings.max_steps
    runs = out_dir / "runs"
    cells = [(r, s) for s in settings.seeds for r in settings.remedies]
    run_jobs([(train_run, (run_flags(settings, r, s, total), runs, run_name(r, s))) for r, s in cells],
             settings.jobs, say)
    return {(r, s): runs / run_name(r, s) for r, s in cells}


def final_accuracy(run_dir: Path) -> float:
    """Mean of the last ACC_WINDOW logged values of D's accuracy (nan if none was logged)."""
    from gan_lightning.runs.folder import series

    values = series(run_dir, ACC_KEY)[-ACC_WINDOW:]
    return sum(values) / len(values) if values else math.nan


def probe_all(settings: Settings, runs: dict[tuple[str, int], Path], out_dir: Path,
              say: Callable[[str], None] = print) -> dict[int, dict[str, Any]]:
    """Per seed, ``scripts/probe_discriminator.py`` on the G of that seed's run without a remedy, with
    one arm per remedy (no noise but the noise arm's); its summary.json by seed. A probe whose
    summary.json exists is reused."""
    root = Path(__file__).resolve().parents[2]
    others = [r for r in settings.remedies if r != "none"]
    found = {}
    for seed in settings.seeds:
        probe_dir = out_dir / f"probe-seed{seed}"
        if not (probe_dir / "summary.json").is_file():
            say(f"probe of G from {run_name('none', seed)}, {settings.d_iters:,} D iterations per remedy")
            cmd = [sys.executable, str(root / "scripts" / "probe_discriminator.py"),
                   "--g_ckpt", str(runs[("none", seed)] / "checkpoints" / "last.ckpt"), "--noise_std", "0",
                   "--d_iters", str(settings.d_iters), "--grad_every", str(settings.grad_every),
                   "--grad_batches", str(settings.grad_batches), "--seed", str(seed), "--logger", "none",
                   "--accelerator", "cpu", "--out_dir", str(probe_dir), "--overwrite",
                   *(["--remedies", ",".join(others)] if others else [])]
            log = out_dir / f"probe-seed{seed}.log"
            with log.open("w") as f:
                code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=root).returncode
            if code:
                raise UsageError(f"the probe of seed {seed} failed (exit {code}); its output: {log}")
        found[seed] = json.loads((probe_dir / "summary.json").read_text())
    return found


def _stat(values: list[float]) -> dict[str, Any]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def summarize(settings: Settings, runs: dict[tuple[str, int], Path],
              probes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per remedy: FID and final D accuracy of its training runs, and its probe's final D
    accuracy, minimax-gradient decay (orders of magnitude), last minimax-gradient norm and growth of
    the -log D gradient norm (last / first), each as mean, std and per-seed values."""
    from gan_lightning.experiments.reproduce import last

    rows = []
    for remedy in settings.remedies:
        probe = [probes[s]["remedies"][remedy][0] for s in settings.seeds]
        decay = [p["grad_norm_minimax_decay_orders"] for p in probe]
        rows.append({
            "remedy": remedy,
            "fid": _stat([last(runs[(remedy, s)], FID_KEY) for s in settings.seeds]),
            "d_accuracy": _stat([final_accuracy(runs[(remedy, s)]) for s in settings.seeds]),
            "probe_d_accuracy": _stat([p["final_d_accuracy"] for p in probe]),
            "probe_minimax_decay_orders": _stat([math.nan if d is None else d for d in decay]),
            "probe_minimax_last": _stat([p["grad_norm_minimax_last"] for p in probe]),
            "probe_nonsaturating_growth": _stat([p["grad_norm_nonsaturating_growth"] for p in probe]),
            "probe_noise_std": probe[0]["noise_std"],
        })
    return rows


def _cell(stat: dict[str, Any], fmt: str) -> str:
    """``mean ± std`` over the seeds that have a value, and how many those are when a seed has none
    (a run that logged no FID is not silently averaged away)."""
    if math.isnan(stat["mean"]):
        return "n/a"
    missing = sum(math.isnan(v) for v in stat["values"])
    of = f" ({len(stat['values']) - missing} of {len(stat['values'])} seeds)" if missing else ""
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}{of}"


# (summary key, panel title, how a mean is drawn): a bar where its axis starts at 0 (its length
# means something), else a short black line (D accuracy lives in 0.5..1, the last norm on a log axis)
PANELS = (("fid", f"FID ({FID_KEY}, lower is better)", "bar"),
          ("d_accuracy", "training D's final accuracy (0.5 = chance)", "line"),
          ("probe_minimax_decay_orders", "probe: minimax gradient decay (orders of 10)", "bar"),
          ("probe_minimax_last", "probe: last minimax gradient norm", "line"))


def draw_table(rows: list[dict[str, Any]]):
    """FID, training D's final accuracy, the probe's minimax decay and last minimax norm per remedy
    as a matplotlib ``Figure``: each seed a dot, the mean a bar on the axes that start at 0 and a
    black line on the others.

    Args:
        rows: summary.json's ``remedies`` (:func:`summarize`).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(15, 3.6), dpi=110)
    axes = fig.subplots(1, len(PANELS))
    names = [r["remedy"] for r in rows]
    for ax, (key, label, mean_as) in zip(axes, PANELS):
        means = [r[key]["mean"] for r in rows]
        if mean_as == "bar":
            ax.bar(range(len(rows)), means, color="#9ecae1", label="mean")
            ax.axhline(0, color="0.3", lw=0.8)
        else:
            ax.plot(range(len(rows)), means, "_", color="black", markersize=22, mew=2, label="mean")
        for i, r in enumerate(rows):
            ax.plot([i] * len(r[key]["values"]), r[key]["values"], "o", color="#08519c", markersize=4,
                    alpha=0.8, label="seeds" if i == 0 else None)
        ax.set_xticks(range(len(rows)), names, rotation=30)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    acc = [v for r in rows for v in r["d_accuracy"]["values"] if not math.isnan(v)]
    axes[1].set_ylim(min([0.5, *acc]) - 0.02, 1.02)  # chance to perfect: the scale of any D's accuracy
    axes[1].axhline(1.0, color="0.5", lw=0.8, ls="--")
    axes[1].legend(fontsize=7, loc="lower left")
    axes[3].set_yscale("log")
    # 0.3, 1, 2, not 3 x 10^-1, 10^0, 2 x 10^0; between powers of 10 only 2, 3 and 5 are named
    axes[3].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[3].yaxis.set_minor_formatter(FuncFormatter(
        lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 3, 5) else ""))
    fig.suptitle("Stability remedies on mnist5k (non-saturating DCGAN): each seed a dot; the mean a bar "
                 "(axes from 0) or a black line")
    fig.tight_layout()
    return fig


def save_figure(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write :func:`draw_table`'s figure of ``rows`` (summary.json's ``remedies``) as a PNG file."""
    draw_table(rows).savefig(path)
    return path


def redraw(out_dir: str | Path) -> Path:
    """Draw ``<out_dir>/fig_remedies_table.png`` again from its ``summary.json``, without training
    (``python -c "from gan_lightning.experiments.remedies import redraw; redraw('docs/remedies')"``)."""
    out = Path(out_dir)
    return save_figure(out / "fig_remedies_table.png", json.loads((out / "summary.json").read_text())["remedies"])


def write_outputs(out_dir: Path, settings: Settings, rows: list[dict[str, Any]], seconds: float) -> list[Path]:
    """summary.json, results.md and fig_remedies_table.png in ``out_dir``; the paths written."""
    summary = {"settings": {**settings.__dict__, "base_flags": list(BASE_FLAGS), "fid_key": FID_KEY,
                            "accuracy_window": ACC_WINDOW},
               "remedies": rows, "wall_seconds": round(seconds)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    seeds = ", ".join(map(str, settings.seeds))
    lines = [
        "# Stability remedies side by side", "",
        f"Each remedy: {len(settings.seeds)} training runs (seeds {seeds}) of a DCGAN (28 px, widths 32, the "
        f"non-saturating loss) on mnist5k for {settings.epochs} epochs, FID of 5,000 samples in the shipped LeNet "
        f"feature space at the end, and the training D's accuracy averaged over its last {ACC_WINDOW} logged "
        "values. The probe: against the G of the same seed's run without a remedy, a fresh D trained for "
        f"{settings.d_iters:,} iterations under each remedy (`scripts/probe_discriminator.py --remedies`); "
        "its final accuracy, how many orders of magnitude G's minimax gradient fell (the measurements in the "
        f"first vs the last 10 iterations; with one every {settings.grad_every}, the first is the untrained D's) "
        "and the last minimax norm; and how much the -log D gradient norm grew (last / first). Mean ± sample "
        "std over seeds.", "",
        "| remedy | FID | training D accuracy | probe: D accuracy | probe: minimax decay (orders) "
        "| probe: last minimax norm | probe: -log D norm growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['remedy']} | {_cell(r['fid'], '.2f')} | {_cell(r['d_accuracy'], '.3f')} "
                     f"| {_cell(r['probe_d_accuracy'], '.3f')} | {_cell(r['probe_minimax_decay_orders'], '.2f')} "
                     f"| {_cell(r['probe_minimax_last'], '.2f')} | {_cell(r['probe_nonsaturating_growth'], '.1f')}x |")
    lines += ["", "Per seed (FID; probe decay):", ""]
    for r in rows:
        fids = ", ".join(f"{v:.2f}" for v in r["fid"]["values"])
        decays = ", ".join(f"{v:.2f}" for v in r["probe_minimax_decay_orders"]["values"])
        lines.append(f"- {r['remedy']}: FID {fids}; decay {decays}")
    lines += ["", f"Wall time of the command that wrote this: {seconds / 60:.0f} min (runs and probes that had "
              "finished before were reused, not timed)."]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    return [out_dir / "summary.json", out_dir / "results.md", save_figure(out_dir / "fig_remedies_table.png", rows)]


def compare(settings: Settings, out_dir: str, overwrite: bool = False) -> int:
    """What scripts/compare_remedies.py runs: every training run and probe (those that finished before are
    reused), then the summary, table and figure in ``out_dir``; prints results.md.

    Raises:
        UsageError: remedies without ``none`` (the probe's G), an ``out_dir`` that cannot be written or
            holds an earlier comparison (without ``overwrite``).
    """
    from gan_lightning.trainer.outputs import check_out_dir

    if "none" not in settings.remedies:
        raise UsageError("--remedies must include none: the probe takes G from the runs without a remedy")
    check_out_dir(out_dir, results=("summary.json", "results.md"), overwrite=overwrite)
    start, out = time.time(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = train_all(settings, out, say=print)
    probes = probe_all(settings, runs, out, say=print)
    rows = summarize(settings, runs, probes)
    written = write_outputs(out, settings, rows, time.time() - start)
    print((out / "results.md").read_text())
    print("wrote " + ", ".join(str(w) for w in written), file=sys.stderr)
    return 0
