"""Checkpoint files: atomic writes, safe reads with one-line errors, and finding the last one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from gan_lightning.errors import UsageError

CHECKPOINT_KEY = "gan_lightning"  # what on_save_checkpoint adds: {"version", "config"}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file, then rename it over the target.

    A process killed mid-write leaves the previous ``last.ckpt`` intact: rename is atomic on
    POSIX file systems.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a gan_lightning checkpoint on the CPU without executing code (``weights_only``).

    Raises:
        UsageError: if the file is missing, unreadable, or not a checkpoint of this project.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means the same to the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path} is not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise UsageError(f"{path} is not a gan_lightning checkpoint (no '{CHECKPOINT_KEY}' entry)")
    return ckpt


def find_last(out_dir: str | Path, run_name: str = "") -> Path:
    """``<out_dir>/<run_name>/checkpoints/last.ckpt``, or the newest such file when run_name is empty.

    Raises:
        UsageError: if there is none.
    """
    out = Path(out_dir)
    if run_name:
        path = out / run_name / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise UsageError(f"--resume last: no {path}; check --run_name and --out_dir")
        return path
    found = sorted(out.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"--resume last: no run under {out} has checkpoints/last.ckpt")
    return found[-1]


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python) in types ``weights_only`` loading accepts."""
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where the same devices exist)."""
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
