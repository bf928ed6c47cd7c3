"""Small torch helpers shared by the modules, callbacks and scripts: context managers, RNG states."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch
from torch import nn


@contextmanager
def eval_mode(module: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode (train mode with ``training=True``) and restore the mode it was
    found in (per submodule)."""
    modes = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield module
    finally:
        for m, training_before in modes:
            m.training = training_before


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Turn off ``requires_grad`` on the parameters of ``module`` for the block, then restore it.

    Used for G's update: gradients flow through D to G's output but D's parameters get none.
    """
    params = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in params:
            p.requires_grad_(flag)


@contextmanager
def rng_kept(device: torch.device) -> Iterator[None]:
    """Restore the CPU RNG and the RNG of ``device`` (when it is not the CPU) after the block."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
    else:
        index = device.index if device.index is not None else 0
        with torch.random.fork_rng(devices=[index], device_type=device.type):
            yield


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


def host_value(buffer: torch.Tensor, cached: tuple[int, int]) -> tuple[int, int]:
    """``(value, version)`` of a 0-dim integer buffer kept as a Python int: ``cached`` while the
    buffer's tensor version counter still matches it (no device read), else one read of the buffer.

    The owner stores ``(value + n, buffer._version)`` after adding n to the buffer itself; a change
    from outside (weights loaded, a move to another device, a test) bumps the version instead.
    """
    value, version = cached
    if version != buffer._version:
        return int(buffer), buffer._version
    return cached


# -- collectives over many tensors at once (DDP's buckets, in short) ----------------------------
def _groups(tensors: Iterable[torch.Tensor]) -> list[list[torch.Tensor]]:
    """``tensors`` grouped by (device, dtype), in order: each group is flattened into one buffer."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return list(groups.values())


def average_coalesced(tensors: list[torch.Tensor], world_size: int) -> None:
    """Replace each tensor, in place, by its mean over the processes: one all-reduce per (device, dtype).

    Every process must pass tensors of the same shapes in the same order (the same parameters).
    The division comes first, as in DDP, so that the sum stays in range.
    """
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    if world_size < 2 or not tensors:
        return
    for group in _groups(tensors):
        flat = _flatten_dense_tensors(group)
        flat.div_(world_size)
        torch.distributed.all_reduce(flat)
        for t, reduced in zip(group, _unflatten_dense_tensors(flat, group)):
            t.copy_(reduced)


def broadcast_coalesced(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s values into ``tensors`` on every process: one broadcast per (device, dtype)."""
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    if not tensors or torch.distributed.get_world_size() < 2:
        return
    for group in _groups(tensors):
        flat = _flatten_dense_tensors(group)
        torch.distributed.broadcast(flat, src)
        for t, value in zip(group, _unflatten_dense_tensors(flat, group)):
            t.copy_(value)
