"""Loggers of a run: metrics.csv always, W&B (online, or offline with one line saying why) or TensorBoard."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from gan_lightning.config import TrainConfig, noise_enabled


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run appends to it instead."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))

    def drop_rows_from(self, step: int) -> int:
        """Remove the rows at ``step`` or later, on file and not yet written; returns how many."""
        self.metrics = [row for row in self.metrics if row["step"] < step]
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [row for row in rows if not row.get("step") or int(row["step"]) < step]
        if len(kept) < len(rows):
            tmp = f"{self.metrics_file_path}.tmp{os.getpid()}"
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            os.replace(tmp, self.metrics_file_path)  # a kill mid-write leaves the old file
        return len(rows) - len(kept)


class AppendingCSVLogger(CSVLogger):
    """CSVLogger writing ``<save_dir>/metrics.csv`` that keeps the rows of earlier sessions of the run.

    A resumed run calls :meth:`drop_rows_from` with the step of its first batch (``LastCheckpoint``
    does), so the rows an interrupted session logged after its checkpoint, which the resumed run
    logs again, are not in the file twice.
    """

    def __init__(self, save_dir: str | Path) -> None:
        super().__init__(save_dir=str(save_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def drop_rows_from(self, step: int) -> None:
        """Forget the rows logged at ``step`` (the trainer's logging step) or later.

        Args:
            step: the logging step of the first batch after the checkpoint a run resumed from.
        """
        self.experiment.drop_rows_from(step)


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
    """W&B group of a run: its loss and noise schedule, so report panels can group by them."""
    return f"{cfg.loss}-noise_{noise_label(cfg)}"
