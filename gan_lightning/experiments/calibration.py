"""How often the stability verdicts are wrong: a labeled corpus of real runs and its confusion matrix.

What ``scripts/calibrate_verdicts.py`` runs. The corpus (:data:`CORPUS`) holds CPU-sized training runs
of ``scripts/train.py`` whose outcome is known by construction: healthy recipes (the default run, the
ablation and remedy recipes, WGAN-GP, hinge, 2-D runs that cover their modes), and one family per
failure, each at two strengths or more and two seeds. Labels come from how a run was built and from its
outcome, never from the verdict code:

- a run built healthy is labeled ``healthy`` only if its outcome is (:func:`outcome_label`: FID falling
  to the end, or every mode covered with most samples near one); otherwise it is left out of the counts
  with the reason;
- a run built to fail is labeled with the verdicts its construction produces (``labels``), once its
  outcome shows the failure where that can be read (``confirm``: modes lost, a loss that exploded);
  symptoms the construction produces as well are listed in ``also`` and count neither way;
- a run whose training crashed (an exit code other than 0, or 3 for a diverged run) is reported as
  crashed and left out.

Each run's verdict is the graded one of its run folder (:func:`gan_lightning.diagnostics.outcome.assess`):
a verdict counts as found when it is a *problem*; notes do not count.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from gan_lightning.errors import UsageError

VERDICTS = ("d_saturation", "vanishing_gradient", "unstable_gradient", "mode_collapse", "divergence", "not_learned")
OK_EXITS = (0, 3)  # trained to the end; stopped for a non-finite loss (a divergence: an outcome, not a crash)

# Building blocks: a 2-D ring run and a small DCGAN on mnist5k (5 s an epoch on one core here).
RING = ("--dataset", "ring", "--batch_size", "64", "--log_every_n_steps", "10", "--shadow_every_n_steps", "10",
        "--metric_num_samples", "1000", "--metric_every_n_epochs", "1", "--sample_every_n_epochs", "0",
        "--g_width", "32", "--d_width", "32")
MNIST = ("--dataset", "mnist5k", "--g_width", "16", "--d_width", "16", "--metric_num_samples", "1000",
         "--metric_every_n_epochs", "1", "--sample_every_n_epochs", "0", "--log_every_n_steps", "10",
         "--shadow_every_n_steps", "10")
QUIET = ("--logger", "csv")
FULL_RECIPE = ("--minibatch_discrimination", "--g_norm", "vbn", "--label_smoothing", "0.9", "--historical_averaging",
               "0.001")  # the ablation's full recipe


@dataclass(frozen=True)
class Entry:
    """One corpus run: its family, the labels its construction gives (``healthy`` for a healthy recipe),
    the symptoms it may show besides, its flags and those of a second session (resumed from the first)."""

    name: str
    family: str
    labels: tuple[str, ...]
    flags: tuple[str, ...]
    then: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    short: bool = False  # seconds to train: run by the test suite
    confirm: str = ""  # the outcome that shows the failure happened (FAILURES), checked before it is labeled

    @property
    def healthy(self) -> bool:
        return self.labels == ("healthy",)

    @property
    def first_epochs(self) -> int:
        """The first session's --max_epochs (0 when not given)."""
        flags = list(self.flags)
        return int(flags[flags.index("--max_epochs") + 1]) if "--max_epochs" in flags else 0


def _seeds(name: str, family: str, labels: tuple[str, ...], flags: tuple[str, ...], seeds: Sequence[int] = (0, 1),
           **kw: Any) -> list[Entry]:
    return [Entry(f"{name}-s{s}", family, labels, (*flags, "--seed", str(s)), **kw) for s in seeds]


SAT = ("d_saturation", "vanishing_gradient")
CORPUS: tuple[Entry, ...] = tuple([
    # -- healthy by construction (and checked by outcome) ------------------------------------------------
    *_seeds("default", "default run", ("healthy",), ()),
    *_seeds("mnist-nonsat", "small DCGAN", ("healthy",), (*MNIST, "--max_epochs", "8")),
    *_seeds("mnist-hinge", "small DCGAN, hinge", ("healthy",), (*MNIST, "--loss", "hinge", "--max_epochs", "8")),
    *_seeds("mnist-wgan-gp", "small DCGAN, WGAN-GP", ("healthy",),
            (*MNIST, "--loss", "wasserstein_gp", "--max_epochs", "8")),
    *_seeds("mnist-r1", "remedy r1", ("healthy",), (*MNIST, "--remedy", "r1", "--max_epochs", "8")),
    *_seeds("mnist-sn", "remedy sn", ("healthy",), (*MNIST, "--remedy", "sn", "--max_epochs", "8")),
    *_seeds("mnist-noise", "remedy noise", ("healthy",), (*MNIST, "--remedy", "noise", "--max_epochs", "8")),
    *_seeds("mnist-mbd", "ablation: full recipe", ("healthy",), (*MNIST, *FULL_RECIPE, "--max_epochs", "8")),
    *_seeds("ring-wgan-gp", "ring, WGAN-GP", ("healthy",), (*RING, "--loss", "wasserstein_gp", "--max_epochs", "10")),
    *_seeds("ring-nonsat", "ring, -log D", ("healthy",), (*RING, "--max_epochs", "10")),
    *_seeds("grid-nonsat", "grid, -log D", ("healthy",), (*RING, "--dataset", "grid", "--max_epochs", "10")),
    # -- saturation that stops G: the minimax cost against a strong D, G (almost) frozen -----------------
    *_seeds("ring-saturated", "saturation (minimax, strong D)", SAT,
            (*RING, "--loss", "minimax", "--lr_d", "0.002", "--lr_g", "1e-6", "--n_critic", "5", "--max_epochs", "2"),
            short=True),
    *_seeds("ring-saturated-weak", "saturation (minimax, strong D)", SAT,
            (*RING, "--loss", "minimax", "--lr_d", "0.005", "--lr_g", "1e-5", "--n_critic", "3", "--max_epochs", "2")),
    *_seeds("mnist-saturated", "saturation (minimax, strong D)", SAT,
            (*MNIST, "--loss", "minimax", "--lr_d", "0.002", "--lr_g", "1e-6", "--n_critic", "3", "--max_epochs", "3")),
    # -- the -log D gradient of a frozen G against a D trained on (A&B's protocol in two sessions) -------
    *_seeds("ring-unstable", "unstable -log D gradient (ring: G frozen, D trained)", ("unstable_gradient",),
            (*RING, "--lr_g", "0.001", "--lr_d", "0.001", "--max_steps", "500", "--max_epochs", "-1"),
            then=("--lr_g", "1e-9", "--lr_d", "0.002", "--n_critic", "10", "--max_steps", "1200"),
            also=(*SAT, "mode_collapse")),  # its first session is the plain ring GAN of the collapse family
    *_seeds("mnist-unstable", "unstable -log D gradient (images: G frozen, D trained)", ("unstable_gradient",),
            (*MNIST, "--max_epochs", "2"),
            then=("--lr_g", "1e-9", "--lr_d", "0.001", "--n_critic", "5", "--max_epochs", "4"), also=SAT),
    # -- mode collapse: the plain GAN on the ring hops between modes and loses them ----------------------
    *_seeds("ring-collapse", "mode collapse (ring)", ("mode_collapse",),
            (*RING, "--g_width", "64", "--d_width", "64", "--lr_g", "0.001", "--lr_d", "0.001", "--max_epochs", "12"),
            confirm="modes_lost"),
    *_seeds("ring-collapse-fast", "mode collapse (ring)", ("mode_collapse",),
            (*RING, "--g_width", "64", "--d_width", "64", "--lr_g", "0.002", "--lr_d", "0.002", "--max_epochs", "12"),
            confirm="modes_lost"),
    # -- mode collapse on images: the full recipe (the one small DCGAN here whose recall rises above 0) for 4
    #    epochs, then its D frozen while G trains on against it at a raised rate: recall falls, precision holds
    *_seeds("mnist-collapse", "mode collapse (images: D frozen, G trained on)", ("mode_collapse",),
            (*MNIST, *FULL_RECIPE, "--max_epochs", "4"), then=("--lr_d", "1e-9", "--lr_g", "0.001", "--max_epochs", "8"),
            also=(*SAT, "unstable_gradient", "divergence"), confirm="recall_lost"),
    *_seeds("mnist-collapse-fast", "mode collapse (images: D frozen, G trained on)", ("mode_collapse",),
            (*MNIST, *FULL_RECIPE, "--max_epochs", "4"), then=("--lr_d", "1e-9", "--lr_g", "0.002", "--max_epochs", "8"),
            also=(*SAT, "unstable_gradient", "divergence"), confirm="recall_lost"),
    # -- a run that got worse: the full recipe for 4 epochs, then both rates raised 25x for 1 or 2 epochs: FID
    #    rises past its best (raised on the plain small DCGAN, whose FID is still falling, they helped instead)
    *_seeds("mnist-fid-rise", "divergence (FID rising past its best)", ("divergence",),
            (*MNIST, *FULL_RECIPE, "--max_epochs", "4"), then=("--lr_g", "0.005", "--lr_d", "0.005", "--max_epochs", "5"),
            also=VERDICTS, confirm="fid_rose"),
    *_seeds("mnist-fid-rise-2ep", "divergence (FID rising past its best)", ("divergence",),
            (*MNIST, *FULL_RECIPE, "--max_epochs", "4"), then=("--lr_g", "0.005", "--lr_d", "0.005", "--max_epochs", "6"),
            also=VERDICTS, confirm="fid_rose"),
    # -- oscillation: a ring GAN whose rates are then raised with heavy momentum: D's loss swings ----------
    *_seeds("ring-oscillating", "divergence (oscillating)", ("divergence",),
            (*RING, "--max_epochs", "2"), then=("--lr_g", "0.05", "--lr_d", "0.05", "--beta1", "0.9",
                                                "--max_epochs", "5"), also=VERDICTS, confirm="loss_swung"),
    # -- divergence: non-finite, exploding --------------------------------------------------------------
    *_seeds("ring-nonfinite", "divergence (non-finite)", ("divergence",),
            (*RING, "--lr_g", "1e20", "--lr_d", "1e20", "--max_epochs", "1"), short=True, also=VERDICTS),
    *_seeds("mnist-nonfinite", "divergence (non-finite)", ("divergence",),
            (*MNIST, "--lr_g", "1e20", "--lr_d", "1e20", "--max_epochs", "1"), also=VERDICTS),
    *_seeds("ring-exploding", "divergence (exploding)", ("divergence",),
            (*RING, "--lr_g", "5", "--lr_d", "5", "--max_epochs", "2"), short=True, also=VERDICTS, confirm="exploded"),
    *_seeds("ring-exploding-1", "divergence (exploding)", ("divergence",),
            (*RING, "--lr_g", "1", "--lr_d", "1", "--max_epochs", "2"), also=VERDICTS, confirm="exploded"),
])


# -- outcome labels of runs built healthy ------------------------------------------------------------
FID_FALL = 0.8  # healthy images: the last FID below this fraction of the first one ...
FID_NEAR_BEST = 1.1  # ... and within this factor of the best one (improving to the end)
QUALITY = 0.5  # healthy points: every mode covered with at least this fraction of samples near a mode


def outcome_label(rows: Sequence[dict[str, str]], num_modes: int | None) -> str:
    """"" when a run's outcome is healthy, else why not. Reads the logged metric directly (not the verdict code)."""
    def values(prefix: str) -> list[float]:
        keys = sorted({k for row in rows for k, v in row.items() if k.startswith(prefix) and v})
        return [float(row[keys[-1]]) for row in rows if keys and row.get(keys[-1])]

    fid = values("fid/")
    if fid:
        if len(fid) < 2:
            return "one FID measurement: no trend"
        if fid[-1] < FID_FALL * fid[0] and fid[-1] <= FID_NEAR_BEST * min(fid):
            return ""
        return f"FID {fid[0]:.3g} -> best {min(fid):.3g} -> last {fid[-1]:.3g}: not improving to the end"
    modes, quality = values("modes_covered/"), values("high_quality/")
    if modes:
        if num_modes and modes[-1] >= num_modes and quality and quality[-1] >= QUALITY:
            return ""
        return f"{modes[-1]:.0f} of {num_modes} modes, {quality[-1] if quality else math.nan:.0%} near a mode at the end"
    return "no quality metric logged"


MODES_LOST = 2  # a collapse happened: modes covered ended at least this many below their best
EXPLODED_LOSS = 1e3  # an explosion happened: a loss of at least this magnitude
RECALL_LOST = 0.15  # images collapsed: recall ended at least this far below its best
FID_ROSE = 1.25  # a run got worse: FID ended at least this factor above its best
LOSS_SWUNG = 10.0  # an oscillation: D's loss after the change reached this factor of its largest value before


def failure_confirmed(check: str, rows: Sequence[dict[str, str]], first_epochs: int = 0) -> str:
    """"" when the outcome shows that a run built to fail did (``Entry.confirm``), else why not. Reads the
    logged values directly (not the verdict code); ``first_epochs``: the epochs of a two-session run's
    first session (where its change was made)."""
    def values(key: str) -> list[float]:
        return [float(row[key]) for row in rows if row.get(key)]

    def first(prefix: str) -> list[float]:  # the values of the first logged key under ``prefix``
        keys = sorted({k for row in rows for k in row if k.startswith(prefix)})
        return values(keys[0]) if keys else []

    if check == "modes_lost":
        modes = first("modes_covered/")
        if modes and max(modes) - modes[-1] >= MODES_LOST:
            return ""
        return f"modes covered {modes[-1]:.0f} at the end, best {max(modes):.0f}: none lost" if modes else "no modes logged"
    if check == "recall_lost":
        recall = first("recall/")
        if recall and max(recall) - recall[-1] >= RECALL_LOST:
            return ""
        return f"recall {recall[-1]:.2f} at the end, best {max(recall):.2f}: not lost" if recall else "no recall logged"
    if check == "fid_rose":
        fid = first("fid/")
        if fid and fid[-1] >= FID_ROSE * min(fid):
            return ""
        return f"FID {fid[-1]:.3g} at the end, best {min(fid):.3g}: not risen" if fid else "no FID logged"
    if check == "loss_swung":  # D's loss after the first session (its epochs) against that before
        split = [(float(row["epoch"]) < first_epochs, abs(float(row["loss/d"]))) for row in rows
                 if row.get("loss/d") and row.get("epoch")]
        before, after = [v for early, v in split if early], [v for early, v in split if not early]
        top = max(after, default=0.0)
        if before and (not math.isfinite(top) or top >= LOSS_SWUNG * max(before)):
            return ""
        return f"D's loss reached {top:.3g} after the change, {max(before, default=0):.3g} before: no swing"
    if check == "exploded":
        top = max((abs(v) for key in ("loss/d", "loss/g") for v in values(key)), default=0.0)
        return "" if not math.isfinite(top) or top >= EXPLODED_LOSS else f"largest loss {top:.3g}: nothing exploded"
    return ""


# -- building ----------------------------------------------------------------------------------------
def build(entry: Entry, corpus: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one corpus run (both sessions) with scripts/train.py in a subprocess, unless it was built
    before; record its exit codes and time in ``<corpus>/<name>.build.json``. Returns that record."""
    record_file = corpus / f"{entry.name}.build.json"
    if record_file.is_file():
        return json.loads(record_file.read_text())
    script = str(Path(__file__).resolve().parents[2] / "scripts" / "train.py")
    base = [sys.executable, script, "--out_dir", str(corpus), "--run_name", entry.name, *QUIET]
    started, exits = time.monotonic(), []
    for i, flags in enumerate([entry.flags, entry.then] if entry.then else [entry.flags]):
        cmd = [*base, *flags, *(["--resume", "last"] if i else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        exits.append(done.returncode)
        (corpus / f"{entry.name}.log").open("a").write(done.stdout + done.stderr)
        if done.returncode not in (0,):
            break
    record = {"exits": exits, "seconds": round(time.monotonic() - started, 1), "flags": list(entry.flags),
              "then": list(entry.then)}
    record_file.write_text(json.dumps(record))
    return record


def build_all(entries: Sequence[Entry], corpus: Path, jobs: int = 1, say: Callable[[str], None] = print,
              env: dict[str, str] | None = None) -> None:
    """Build every entry not built yet, ``jobs`` at a time (one thread each)."""
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    corpus.mkdir(parents=True, exist_ok=True)
    todo = [e for e in entries if not (corpus / f"{e.name}.build.json").is_file()]
    say(f"building {len(todo)} of {len(entries)} corpus runs, {jobs} at a time, into {corpus}")
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for entry, record in zip(todo, pool.map(lambda e: build(e, corpus, env), todo)):
            say(f"  {entry.name}: exit {record['exits']} in {record['seconds']:.0f} s")


# -- scoring ----------------------------------------------------------------------------------------
@dataclass
class Scored:
    """One corpus run after scoring: its labels (empty when left out, with ``left_out`` saying why) and
    the verdicts found (problems) and noted."""

    entry: Entry
    labels: tuple[str, ...]
    found: tuple[str, ...]
    line: str
    left_out: str = ""
    seconds: float = 0.0


def score(entry: Entry, corpus: Path) -> Scored:
    """The labels and verdicts of one built corpus run.

    Raises:
        UsageError: its run folder has no metrics.csv (a corpus folder that is not one).
    """
    from gan_lightning.diagnostics.outcome import PROBLEM, assess, status
    from gan_lightning.runs.diagnosis import local_run, num_modes

    run = corpus / entry.name
    record_file = corpus / f"{entry.name}.build.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    seconds = float(record.get("seconds", 0.0))
    crashed = [code for code in record.get("exits", []) if code not in OK_EXITS]
    if crashed:
        return Scored(entry, (), (), "", f"crashed (exit {crashed[0]}, see {entry.name}.log)", seconds)
    if not (run / "metrics.csv").is_file():
        raise UsageError(f"{run}: no metrics.csv; a corpus folder holds the run folders calibrate_verdicts.py builds")
    config, rows = local_run(run)
    stopped = "a non-finite loss" if 3 in record.get("exits", []) else ""
    found = assess(rows, config, num_modes=num_modes(config), stopped=stopped)
    problems = tuple(v.name for v in found if v.severity == PROBLEM)
    labels, why = entry.labels, ""
    if entry.healthy:
        why = outcome_label(rows, num_modes(config))
        why = f"built healthy, but {why}" if why else ""
    else:
        why = failure_confirmed(entry.confirm, rows, entry.first_epochs)
        why = f"built to fail, but {why}" if why else ""
    labels = () if why else labels
    return Scored(entry, labels, problems, status(found), why, seconds)


def confusion(scored: Sequence[Scored]) -> dict[str, dict[str, int]]:
    """Per verdict (and ``healthy``: no problem found): TP, FP, FN, TN over the labeled runs. A symptom
    a run's construction also produces (``Entry.also``) counts neither way for that run."""
    table: dict[str, dict[str, int]] = {}
    labeled = [s for s in scored if s.labels]
    for verdict in (*VERDICTS, "healthy"):
        counts = dict(TP=0, FP=0, FN=0, TN=0)
        for s in labeled:
            found = not s.found if verdict == "healthy" else verdict in s.found
            truth = verdict in s.labels
            if not truth and verdict in s.entry.also:
                continue
            counts[("T" if found == truth else "F") + ("P" if found else "N")] += 1
        table[verdict] = counts
    return table


def calibrate(corpus: str | Path, entries: Sequence[Entry] = CORPUS) -> list[Scored]:
    """Score every entry built in ``corpus`` (entries not built are skipped).

    Raises:
        UsageError: a missing corpus folder, or one that holds no corpus run.
    """
    folder = Path(corpus)
    if not folder.is_dir():
        raise UsageError(f"no such corpus folder: {corpus} (build it with --build)")
    built = [e for e in entries if (folder / e.name).is_dir() or (folder / f"{e.name}.build.json").is_file()]
    if not built:
        raise UsageError(f"{corpus}: no corpus run in it (build them with --build)")
    return [score(e, folder) for e in built]


def markdown(scored: Sequence[Scored], command: str, corpus: str | Path) -> str:
    """docs/verdicts_calibration.md: the confusion matrix, the targets, every run with its label and verdict,
    the decided thresholds' margins (read from the run folders in ``corpus``)."""
    from gan_lightning.diagnostics import outcome as O
    from gan_lightning.diagnostics import verdicts as V
    from gan_lightning.experiments.calibration_margins import margins

    labeled = [s for s in scored if s.labels]
    table = confusion(scored)
    lines = ["# Calibration of the stability verdicts", "",
             f"{len(scored)} corpus runs, {len(labeled)} labeled, {len(scored) - len(labeled)} left out (below). "
             f"Built and scored with `{command}` "
             f"({sum(s.seconds for s in scored) / 60:.0f} min of training, one thread each).", "",
             "A verdict counts as found when the graded diagnosis reports it as a *problem*; notes (symptoms "
             "that did not hurt the outcome) do not count. `healthy` means no problem found.", "",
             "| verdict | TP | FP | FN | TN | recall | false alarms |", "|---|---|---|---|---|---|---|"]
    for verdict, c in table.items():
        pos = c["TP"] + c["FN"]
        recall = f"{c['TP'] / pos:.2f}" if pos else "-"
        lines.append(f"| {verdict} | {c['TP']} | {c['FP']} | {c['FN']} | {c['TN']} | {recall} | {c['FP']} |")
    healthy = [s for s in labeled if s.entry.healthy]
    alarms = [s for s in healthy if s.found]
    families = sorted({s.entry.family for s in labeled if not s.entry.healthy})
    missed = [f for f in families if any(set(s.labels) - set(s.found) for s in labeled if s.entry.family == f)]
    lines += ["", "## Targets", "",
              f"- False alarms on healthy-by-outcome runs: {len(alarms)} of {len(healthy)} (target 0)"
              + (": " + ", ".join(s.entry.name for s in alarms) if alarms else "") + ".",
              f"- Failure families caught by their own verdicts at every run: {len(families) - len(missed)} of "
              f"{len(families)} (target all)" + (f"; missed in: {', '.join(missed)}" if missed else "") + ".", "",
              "## Runs", "", "| run | family | label | verdict line | as labeled |", "|---|---|---|---|---|"]
    for s in scored:
        label = ", ".join(s.labels) if s.labels else f"left out: {s.left_out}"
        ok = "-" if not s.labels else "yes" if (not s.found if s.entry.healthy else set(s.labels) <= set(s.found)) \
            else "**no**"
        lines.append(f"| {s.entry.name} | {s.entry.family} | {label} | {s.line or '-'} | {ok} |")
    lines += ["", *margins(scored, corpus), "", "## Thresholds", "", "The named constants the verdicts were scored with:", ""]
    for module, names in ((V, ("SATURATED_ACC", "SATURATED_ROWS", "VANISH_DROP", "UNSTABLE_GROWTH", "DIVERGE_FID_RATIO",
                               "EXPLODED", "EXPLODED_BCE", "LOSS_SWING")), (O, ("STALL_RATIO", "NOT_LEARNED_QUALITY"))):
        lines += [f"- `{module.__name__.rsplit('.', 1)[1]}.{n}` = {getattr(module, n):.4g}" for n in names]
    return "\n".join(lines) + "\n"
