"""Checkpoint files: atomic writes, safe reads with one-line errors, fitting stored weights to a module."""

from __future__ import annotations

import inspect
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

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

    def load_checkpoint(self, path: str | Path, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Read with ``weights_only=True`` unless the caller says otherwise: a resume never runs pickled code.

        Our checkpoints hold tensors, numbers, strings and containers only (RNG states included, see
        :func:`gan_lightning.torch_utils.rng_state`), so nothing needs full unpickling; Lightning leaves the choice to torch's
        default, which an environment variable (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) can turn off.
        """
        weights_only = True if weights_only is None else weights_only
        if "weights_only" in inspect.signature(super().load_checkpoint).parameters:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        # Lightning < 2.5 reads with torch's default; a local file is read here the same way, weights only
        import torch

        return torch.load(path, map_location=map_location, weights_only=weights_only)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a gan_lightning checkpoint on the CPU without executing code (``weights_only``).

    Raises:
        UsageError: if the file is missing, unreadable, asks to run code, or is not a checkpoint of
            this project (no stored training config).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means the same to the user
        raise UsageError(f"{path} is not a readable checkpoint ({_unreadable(path, e)})") from None
    stored = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict) \
            or not isinstance(ckpt.get("state_dict"), Mapping):
        raise UsageError(f"{path} is not a gan_lightning checkpoint (no '{CHECKPOINT_KEY}' entry with the "
                         f"training config, or no state_dict); give a last.ckpt that scripts/train.py wrote")
    return ckpt


def _unreadable(path: Path, error: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in a few words (torch's own text is a page long)."""
    text = str(error)
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if code:  # a pickle that imports and calls something: exactly what weights_only loading refuses
        return f"it would run {code.group(1)} when unpickled; checkpoints are read without running code"
    if not zipfile.is_zipfile(path):
        return "not a complete torch zip file: truncated, or not written by torch.save"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


# State in a module's state_dict that is no network, so a checkpoint without it (or with it where the
# config has none) still fits: a penalty's counters and averages (the lazy-regularization counter of
# R1/R2, historical averaging's running means), which start afresh.
PENALTY_PREFIXES = ("d_penalties.", "g_penalties.")
# Weight averages: (prefix of the average, prefix of the network it follows, the flag that turns it on, its name).
AVERAGES = (("g_ema.", "generator.", "--g_ema", "G"), ("ema.", "discriminator.", "--ema_decay", "D"))


def fit_state_dict(own: Mapping[str, Any], stored: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A checkpoint's state_dict made to fit a module built from another config, where what differs
    is no network; and one notice line for each change a user should know of.

    - A penalty's state (PENALTY_PREFIXES) missing from ``stored`` starts as in a new run; one that
      ``stored`` has and ``own`` lacks is dropped: adding ``--r1_weight`` on a branch is fine.
    - A weight average (AVERAGES, ``--g_ema``) that ``own`` has and ``stored`` lacks starts from the
      stored weights of the network it follows (its update count at 0, so it warms up again); one
      that ``stored`` has and ``own`` lacks is dropped.

    - A counter added to the modules after a checkpoint was written (LATER_COUNTERS: ``skipped_steps`` of
      the semi-supervised task, guarded since) starts at 0.

    Everything else is left as it is, for :func:`load_weights` to compare.

    Args:
        own: the state_dict of the module built from the config.
        stored: the checkpoint's ``state_dict``.

    Returns:
        The state_dict to load, and the notice lines (empty when nothing was changed).
    """
    from gan_lightning.modules.base import LATER_COUNTERS

    state = dict(stored)
    notes: list[str] = []
    for key in own:
        if (key.startswith(PENALTY_PREFIXES) or key in LATER_COUNTERS) and key not in state:
            state[key] = own[key]
    for key in stored:
        if key.startswith(PENALTY_PREFIXES) and key not in own:
            del state[key]
    for prefix, follows, flag, name in AVERAGES:
        mine = [k for k in own if k.startswith(prefix)]
        theirs = [k for k in stored if k.startswith(prefix)]
        if mine and not theirs:
            net = prefix + "net."
            sources = {k: follows + k[len(net):] for k in mine if k.startswith(net)}
            if all(src in stored for src in sources.values()):
                state.update({k: stored[src] for k, src in sources.items()})
                state.update({k: own[k] for k in mine if k not in sources})  # the update count: 0
                notes.append(f"notice: {flag} on a checkpoint without an average of {name}: the average starts "
                             f"from the checkpoint's {name} weights")
        elif theirs and not mine:
            for k in theirs:
                del state[k]
            notes.append(f"notice: {flag} 0 on a checkpoint with an average of {name}: the average is dropped, "
                         f"this run uses the live {name}")
    return state, notes


OPTIMIZER_FLAGS = ("lr_g", "lr_d", "beta1", "beta2", "adam_eps")  # what a resumed run's optimizers take from the flags


def optimizer_changes(stored: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """One notice line per optimizer setting (OPTIMIZER_FLAGS) that differs between a checkpoint's stored
    config and this run's: the run goes on with the new value (the module sets it at the start)."""
    return [f"notice: --{k} {config[k]:g} on a checkpoint trained at {stored[k]:g}: the optimizer goes on at "
            f"--{k} {config[k]:g} (Adam's moment estimates are kept)"
            for k in OPTIMIZER_FLAGS if k in stored and k in config and stored[k] != config[k]]


def load_weights(module: Any, state_dict: Mapping[str, Any], path: str | Path) -> list[str]:
    """``module.load_state_dict(state_dict)`` (strict, after :func:`fit_state_dict`), or one line naming
    the first entry that does not fit.

    Args:
        module: the networks built from the checkpoint's (or the command line's) config.
        state_dict: the checkpoint's ``state_dict``.
        path: the checkpoint, for the message.

    Returns:
        The notice lines of :func:`fit_state_dict` (empty when the checkpoint fitted as it was).

    Raises:
        UsageError: missing or unexpected entries, or tensors of another shape: a checkpoint of
            another architecture, or a flag that changes the networks.
    """
    import torch

    own = module.state_dict()
    state_dict, notes = fit_state_dict(own, state_dict)
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    resized = [k for k in own if k in state_dict and isinstance(own[k], torch.Tensor)
               and isinstance(state_dict[k], torch.Tensor) and own[k].shape != state_dict[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if resized:
        k = resized[0]
        problems.append(f"{len(resized)} of another shape, e.g. {k} {tuple(state_dict[k].shape)} in the file "
                        f"vs {tuple(own[k].shape)}")
    if not problems:
        try:
            module.load_state_dict(state_dict)
            return notes
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            problems.append(" ".join(str(e).split())[:200])
    raise UsageError(f"{path}: its weights do not fit the networks of the config ({'; '.join(problems)}): "
                     f"a checkpoint of another architecture, or a flag that changes the networks")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files of :class:`AtomicCheckpointIO` whose writer is gone; return them.

    A process killed during a checkpoint write (SIGKILL, out of memory) leaves
    ``.<name>.tmp<pid>`` behind; the file of a writer still running on this machine is kept.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
