"""``scripts/diagnose.py --wandb``: the rows a W&B run logged, read back from its history, for the
stability verdict (:mod:`gan_lightning.runs.diagnosis`)."""

from __future__ import annotations

from typing import Any

from gan_lightning.diagnostics.diagnosis import has_diagnostics
from gan_lightning.diagnostics.verdicts import X
from gan_lightning.errors import UsageError


def wandb_run(path: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """(config, logged rows, run name) of a W&B run ``ENTITY/PROJECT/RUN_ID``, from its history.

    Raises:
        UsageError: a malformed path, no network or API key, an unknown run, nothing to diagnose.
    """
    from gan_lightning.trainer.loggers import wandb_mode

    if len([p for p in path.split("/") if p]) != 3:
        raise UsageError(f"--wandb: expected ENTITY/PROJECT/RUN_ID, got {path!r}")
    mode, why = wandb_mode()
    if mode != "online":
        raise UsageError(f"--wandb: cannot reach W&B ({why or 'WANDB_MODE=' + mode})")
    import wandb

    try:
        run = wandb.Api().run(path)
        rows = [dict(h) for h in run.scan_history()]
    except Exception as e:  # no such run, no access: one line
        raise UsageError(f"--wandb {path}: cannot read the run ({' '.join(str(e).split())[:200]})") from None
    for row in rows:  # W&B leaves keys a row did not log out; metrics.csv has them empty
        if row.get(X) is None and row.get("trainer/global_step") is not None:
            row["step"] = row["trainer/global_step"]
    if not has_diagnostics(rows):
        raise UsageError(f"--wandb {path}: the run logged no D accuracy or gradient norms to diagnose")
    return dict(run.config), rows, run.name
