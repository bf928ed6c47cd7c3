"""Loggers of a run: metrics.csv always, W&B (online, or offline with one line saying why) or TensorBoard.

One x-axis: every row a run logs (losses, diagnostics, metrics, sample grids) carries
``progress/g_steps`` and ``progress/images_seen`` (:class:`ProgressColumns`, fed by
:class:`ProgressAxis`), and W&B plots everything against one of them (``--x_axis``).
"""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from gan_lightning.config import TrainConfig, noise_enabled
from gan_lightning.lightning_state import experiment_if_created, set_experiment_cache

G_STEPS, IMAGES_SEEN = "progress/g_steps", "progress/images_seen"


class ProgressColumns:
    """Mixed into a Lightning logger: each row it logs also carries the run's progress (G steps and
    real images seen so far, from :class:`ProgressAxis`), whoever logged the row."""

    progress: Callable[[], dict[str, float]] | None = None

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self.progress is not None:
            metrics = {**metrics, **self.progress()}
        super().log_metrics(metrics, step)  # type: ignore[misc]


class ProgressAxis(L.Callback):
    """Hands every :class:`ProgressColumns` logger the module's progress: ``g_step_count`` and
    ``images_seen`` (read from the device when a row is written, i.e. at log steps only)."""

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        def progress() -> dict[str, float]:
            return {G_STEPS: pl_module.g_step_count, IMAGES_SEEN: int(pl_module.images_seen)}

        for logger in trainer.loggers:
            if isinstance(logger, ProgressColumns):
                logger.progress = progress


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends to it instead."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            from gan_lightning.diagnostics.diagnosis import read_table  # the one reader of metrics.csv

            self.metrics_keys = read_table(os.path.dirname(self.metrics_file_path))[0]

    def drop_rows_from(self, step: int) -> int:
        """Remove the rows at ``step`` or later, on file and not yet written; returns how many."""
        self.metrics = [row for row in self.metrics if row["step"] < step]
        if not os.path.isfile(self.metrics_file_path):
            return 0
        # The one reader of metrics.csv; not through runs.folder, which imports build, which imports this module.
        from gan_lightning.diagnostics.diagnosis import read_rows

        rows = read_rows(os.path.dirname(self.metrics_file_path))
        kept = [row for row in rows if not row.get("step") or int(row["step"]) < step]
        if len(kept) < len(rows):
            tmp = f"{self.metrics_file_path}.tmp{os.getpid()}"
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            os.replace(tmp, self.metrics_file_path)  # a kill mid-write leaves the old file
        return len(rows) - len(kept)


class AppendingCSVLogger(ProgressColumns, CSVLogger):
    """CSVLogger writing ``<save_dir>/metrics.csv`` that keeps the rows of earlier sessions of the run.

    A resumed run calls :meth:`drop_rows_from` with the step of its first batch (``LastCheckpoint``
    does), so the rows an interrupted session logged after its checkpoint, which the resumed run
    logs again, are not in the file twice.
    """

    def __init__(self, save_dir: str | Path) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if experiment_if_created(self) is None:  # CSVLogger's own cache, which its finalize() reads too
            os.makedirs(self.root_dir, exist_ok=True)
            set_experiment_cache(self, _AppendingWriter(log_dir=self.log_dir))
        return experiment_if_created(self)

    @rank_zero_only
    def drop_rows_from(self, step: int) -> None:
        """Forget the rows logged at ``step`` (the trainer's logging step) or later.

        Args:
            step: the logging step of the first batch after the checkpoint a run resumed from.
        """
        self.experiment.drop_rows_from(step)


class RunWandbLogger(ProgressColumns, WandbLogger):
    """Lightning's WandbLogger with one x-axis for every chart (``progress/<x_axis>``, not the trainer's
    step) and run summaries that keep the best and the last value of each quality metric.

    Args:
        x_axis: ``g_steps`` or ``images_seen``.
        **kwargs: WandbLogger's arguments.
    """

    def __init__(self, x_axis: str = "g_steps", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x_axis, self._axes_defined = x_axis, False

    @property
    @override
    def experiment(self) -> Any:
        run = super().experiment
        if not self._axes_defined and callable(getattr(run, "define_metric", None)):
            define_axes(run, f"progress/{self.x_axis}")
            self._axes_defined = True
        return run


def define_axes(run: Any, x: str) -> None:
    """W&B metric definitions of a run: every key plotted against ``x``; fid, kid, IS, precision,
    recall, modes and test error summarized by their best (min or max) and last value."""
    from gan_lightning.metrics.keys import BEST

    for key in (G_STEPS, IMAGES_SEEN):
        run.define_metric(key)
    run.define_metric("*", step_metric=x, step_sync=True)
    for name, best in BEST.items():
        run.define_metric(name if "/" in name else f"{name}/*", step_metric=x, step_sync=True, summary=f"{best},last")


def finish_wandb(loggers: Sequence[Any], exit_code: int = 0) -> None:
    """End the W&B run of a finished training run (Lightning leaves it open), so that the next
    training run in this process (a test, a local sweep) starts a W&B run of its own."""
    for logger in loggers:
        run = experiment_if_created(logger) if isinstance(logger, WandbLogger) else None
        if run is not None:
            run.finish(exit_code=exit_code)
            set_experiment_cache(logger, None)  # finished once


def wandb_mode() -> tuple[str, str]:
    """("online" | "offline" | "disabled", why): offline per WANDB_MODE, without an API key, or without network.

    The network check is a 3-second TCP connect, so a machine with no network never waits
    for wandb's own (much longer) timeouts.
    """
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("offline", "dryrun", "disabled"):
        return ("disabled" if env == "disabled" else "offline"), f"WANDB_MODE={env}"
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host, _, port = url.split("://")[-1].split("/")[0].partition(":")
    if not os.environ.get("WANDB_API_KEY"):
        import netrc

        try:
            has_key = netrc.netrc().authenticators(host) is not None
        except (OSError, netrc.NetrcParseError):
            has_key = False
        if not has_key:
            return "offline", "no W&B API key (run `wandb login` to log online)"
    try:
        with socket.create_connection((host, int(port or 443)), timeout=3):
            pass
    except OSError:
        return "offline", f"cannot reach {host}"
    return "online", ""


def noise_label(cfg: TrainConfig) -> str:
    return cfg.noise_schedule if noise_enabled(cfg) else "none"


def run_group(cfg: TrainConfig) -> str:
    """W&B group of a run: its loss and its --remedy (``<loss>-remedy_<name>``), or without one its noise
    schedule (``<loss>-noise_<schedule>``), so report panels can group by them."""
    if cfg.remedy != "none":
        return f"{cfg.loss}-remedy_{cfg.remedy}"
    return f"{cfg.loss}-noise_{noise_label(cfg)}"
