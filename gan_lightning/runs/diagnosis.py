"""A run's stability verdict (:mod:`gan_lightning.diagnostics.verdicts`) from its run folder:
``diagnosis.md`` and ``diagnosis.png`` written there at the end of every training run
(:func:`after_training`) and by ``scripts/diagnose.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from gan_lightning.diagnostics.diagnosis import has_diagnostics, write_diagnosis
from gan_lightning.diagnostics.verdicts import Verdict
from gan_lightning.errors import UsageError
from gan_lightning.lightning_state import experiment_if_created


def num_modes(config: Mapping[str, Any]) -> int | None:
    """Modes of the run's data set when it is a 2-D mixture (ring: 8, grid: 25), else None."""
    from gan_lightning.metrics.mode_coverage import MIXTURES

    mixture = MIXTURES.get(str(config.get("dataset", "")))
    return len(mixture[0]()) if mixture else None


def run_folder_of(path: Path) -> Path | None:
    """The run folder a file of a run lies in (``<run>/metrics.csv``, ``<run>/checkpoints/last.ckpt``),
    None for any other file."""
    if path.name in ("metrics.csv", "config.yaml", "diagnosis.md", "diagnosis.png"):
        return path.parent
    if path.suffix == ".ckpt" and path.parent.name == "checkpoints":
        return path.parent.parent
    return None


def local_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(config, logged rows) of a run folder.

    Raises:
        UsageError: a file or no such folder, no metrics.csv, one that is not CSV text, a config.yaml that is
            not a YAML mapping (runs.folder), or nothing a verdict reads in it.
    """
    from gan_lightning.runs import folder as run_folder

    folder = Path(run_dir)
    if folder.is_file():
        run = run_folder_of(folder)
        raise UsageError(f"{run_dir} is a file, not a run folder" + (f"; pass its run folder {run}" if run else ""))
    if not folder.is_dir():
        raise UsageError(f"no such run folder: {run_dir}")
    if not (folder / run_folder.METRICS).is_file():
        raise UsageError(f"{run_dir}: no metrics.csv (a run folder of scripts/train.py has one)")
    rows = run_folder.rows(folder)
    if not has_diagnostics(rows):
        raise UsageError(f"{run_dir}: metrics.csv holds no D accuracy or gradient norms to diagnose (a run with "
                         "--diagnostics false)")
    return run_folder.config(folder), rows


def diagnose_run(rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any], out_dir: str | Path, source: str,
                 stopped: str = "") -> list[Verdict]:
    """Write diagnosis.md and diagnosis.png of ``rows`` into ``out_dir``; returns the verdicts."""
    return write_diagnosis(rows, out_dir, source, num_modes=num_modes(config), stopped=stopped, config=config)


def after_training(run_dir: Path, loggers: Sequence[Any], stopped: str = "", say=print) -> list[Verdict]:
    """The verdicts at the end of a training run (rank 0): the files in the run folder, one console
    line, ``diagnosis/*`` keys in the W&B run summary. A run with nothing to diagnose gets nothing."""
    from gan_lightning.diagnostics.diagnosis import MD, summary_line, summary_values

    try:
        config, rows = local_run(run_dir)
    except UsageError:
        return []
    found = diagnose_run(rows, config, run_dir, run_dir.name, stopped)
    say(f"diagnosis: {summary_line(found)} (see {run_dir / MD})")
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        run = experiment_if_created(logger) if isinstance(logger, WandbLogger) else None
        if run is not None:
            run.summary.update(summary_values(found))
    return found


def verdict_line(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    """The stability verdict of a run's rows, graded by its outcome: the problems first, "healthy" when
    there are only notes (the line diagnosis.md heads with); "" when the rows hold nothing to diagnose."""
    from gan_lightning.diagnostics.outcome import assess, status

    if not has_diagnostics(rows):
        return ""
    return status(assess(rows, config, num_modes=num_modes(config)))
