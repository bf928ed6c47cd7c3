"""A run folder read back: the one owner of what scripts/train.py leaves behind and of the way from a
checkpoint to a module.

``<run>/config.yaml`` (:func:`config`), ``<run>/metrics.csv`` (:func:`rows`, a metric's :func:`series`),
``<run>/checkpoints/last.ckpt`` (:func:`last_checkpoint`, :func:`find_last`), and :func:`load`: a
checkpoint's resolved config and module, for a resume, scripts/evaluate.py and the probe study.

Sits above the builders (``load`` builds the module), so nothing that ``build`` imports imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The one parser of metrics.csv; it lives in diagnostics, whose verdicts read rows and may not import runs.
from gan_lightning.diagnostics.diagnosis import read_rows as rows
from gan_lightning.errors import UsageError

CONFIG, METRICS, LAST = "config.yaml", "metrics.csv", Path("checkpoints", "last.ckpt")


def config(run_dir: str | Path) -> dict[str, Any]:
    """The flags in ``<run_dir>/config.yaml`` ({} without one).

    Raises:
        UsageError: a config.yaml that is not YAML text or holds no mapping (the message starts with ``run_dir``).
    """
    import yaml

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    try:
        values = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise UsageError(f"{run_dir}: config.yaml is not YAML text ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{run_dir}: config.yaml holds no mapping of settings")
    return values


def series(run_dir: str | Path, key: str) -> list[float]:
    """The values of ``key`` in ``<run_dir>/metrics.csv``, in the order they were logged (empty without any).

    Raises:
        UsageError: a metrics.csv that is not CSV text (:func:`rows`).
    """
    if not (Path(run_dir) / METRICS).is_file():
        return []
    values = []
    for row in rows(run_dir):
        try:
            values.append(float(row[key]))
        except (KeyError, TypeError, ValueError):  # not logged in this row, or a row still being written
            pass
    return values


def last_checkpoint(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints/last.ckpt``, whether it is there yet or not."""
    return Path(run_dir) / LAST


def find_last(out_dir: str | Path, run_name: str = "") -> Path:
    """The last checkpoint of run ``<out_dir>/<run_name>``, or the newest one under ``out_dir`` when run_name is empty.

    Raises:
        UsageError: if there is none.
    """
    out = Path(out_dir)
    if run_name:
        path = last_checkpoint(out / run_name)
        if not path.is_file():
            raise UsageError(f"--resume last: no {path}; check --run_name and --out_dir")
        return path
    found = sorted(out.glob(f"*/{LAST.as_posix()}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"--resume last: no run under {out} has checkpoints/last.ckpt")
    return found[-1]


@dataclass
class Loaded:
    """A checkpoint made a module again: what :func:`load` returns."""

    cfg: Any  # ResolvedConfig: the checkpoint's, or the one load was given
    module: Any  # the LightningModule of cfg, the checkpoint's weights in it (on the CPU)
    stored: dict[str, Any]  # the flags the checkpoint holds, as saved
    checkpoint: dict[str, Any]  # the whole file (epoch, loops, state_dict): what a resume still reads
    notes: list[str]  # a notice line per entry made to fit (checkpoints.fit_state_dict)


def load(path: str | Path, cfg: Any = None) -> Loaded:
    """The one way from a checkpoint of this project to its config and module.

    Args:
        path: a ``.ckpt`` file that scripts/train.py wrote.
        cfg: the ResolvedConfig to build the module of (a resume: the checkpoint's flags under the given
            ones, validated); None for the checkpoint's own flags, validated here, without the files the
            run was started from (``--resume``, ``--config``), which the module does not need and may be gone.

    Raises:
        UsageError: a missing, unreadable or foreign file, a stored config of an unknown data set or that
            validation refuses, or weights that do not fit the networks of the config.
    """
    from gan_lightning.build import build_module
    from gan_lightning.config import config_from_dict, resolve, validate
    from gan_lightning.data.datasets import DATASETS, data_shape
    from gan_lightning.trainer.checkpoints import CHECKPOINT_KEY, load_weights, read_checkpoint

    checkpoint = read_checkpoint(path)
    stored = checkpoint[CHECKPOINT_KEY]["config"]
    if cfg is None:
        if stored.get("dataset") not in DATASETS:
            raise UsageError(f"{path} holds no usable training config (no known 'dataset' in it)")
        cfg = resolve(config_from_dict({**stored, "resume": "", "config": ""}))
        validate(cfg)
    module = build_module(cfg, data_shape(DATASETS[cfg.dataset], cfg.image_size))
    notes = load_weights(module, checkpoint["state_dict"], path)
    return Loaded(cfg, module, stored, checkpoint, notes)
