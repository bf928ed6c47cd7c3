"""Loggers of a run: metrics.csv always, W&B (online, or offline with one line saying why) or TensorBoard."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from gan_lightning.config import TrainConfig, noise_enabled, resolve_arch


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


def build_loggers(cfg: TrainConfig, run_dir: Path, say=print) -> list[Any]:
    """CSV always (``<run_dir>/metrics.csv``), plus W&B or TensorBoard; nothing for ``--logger none``.

    Args:
        cfg: the run's config; logged as the W&B config.
        run_dir: the run folder.
        say: where the one-line offline notice goes.
    """
    if cfg.logger == "none":
        return []
    loggers: list[Any] = [AppendingCSVLogger(run_dir)]
    if cfg.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    elif cfg.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        mode, why = wandb_mode()
        if mode == "offline":
            say(f"W&B: {why}; logging offline under {run_dir}/wandb; "
                f"sync later with `wandb sync {run_dir}/wandb/offline-run-*`")
        # One id per run folder, kept in a file, so a resumed run continues the same W&B run.
        id_file = run_dir / "wandb_id.txt"
        if not id_file.is_file():
            import secrets

            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(secrets.token_hex(4))
        wandb_logger = WandbLogger(
            project=cfg.project, name=cfg.run_name, save_dir=str(run_dir), mode=mode,
            id=id_file.read_text().strip(), resume="allow",
            group=run_group(cfg), tags=[cfg.loss, f"noise:{noise_label(cfg)}", cfg.dataset, resolve_arch(cfg)],
            config=cfg.to_dict(),
        )
        # Lightning passes anonymous=None, and W&B warns on every run that the setting has no effect.
        wandb_logger._wandb_init.pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers
