"""Training the ``lenet-mnist`` feature extractor: what ``scripts/train_feature_extractor.py`` runs."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_lightning.errors import UsageError
from gan_lightning.metrics.extractors import EXTRACTORS, WEIGHTS_DIR, file_sha256
from gan_lightning.metrics.keys import metric_key
from gan_lightning.metrics.lenet import LeNetMNIST, lenet_input
from gan_lightning.trainer.outputs import check_out_file

SHIPPED = WEIGHTS_DIR / EXTRACTORS["lenet-mnist"].shipped


def digits(split: str, image_size: int) -> tuple[Tensor, Tensor]:
    """mnist5k ``split`` as the classifier sees it: (N, 1, 32, 32) in [-1, 1] and labels (N,)."""
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.images import to_uint8

    data = DATASETS["mnist5k"].load(split, image_size, "data", False)
    x, y = data.tensors
    return lenet_input(to_uint8(x)), y


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random rotation (+-12 deg), scale (0.9-1.1) and shift (+-3 px) of (B, 1, 32, 32) in [-1, 1]."""
    b = len(x)
    angle = (torch.rand(b, generator=g) * 2 - 1) * math.radians(12)
    scale = 0.9 + 0.2 * torch.rand(b, generator=g)
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * (3 * 2 / x.shape[-1])  # pixels -> [-1, 1] coords
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, 32, 32, 2)
    # Pad with the background (-1): sample x + 1 with zero padding, then shift back.
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.no_grad()
def accuracy(net: LeNetMNIST, x: Tensor, y: Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def train(epochs: int, batch_size: int, lr: float, seed: int) -> LeNetMNIST:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = digits("train", 32)
    net = LeNetMNIST()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        total, correct = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            logits = net(augment(x[idx], g))  # (B, 10)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((logits.detach().argmax(1) == y[idx]).sum())
        print(f"epoch {epoch + 1:3d}/{epochs}  loss {total / len(x):.4f}  augmented train acc {correct / len(x):.4f}",
              file=sys.stderr, flush=True)
    net.eval()
    with torch.no_grad():  # unit root mean square of the metric features over the (unaugmented) train digits
        net.feature_rms.copy_(net.features(x).pow(2).mean().sqrt())
    return net


def check_out(out: str, overwrite: bool) -> Path:
    """The file to write the weights to (symlinks resolved), checked before training.

    Raises:
        UsageError: no ``--out``; the shipped file, by any spelling (relative, through symlinks,
            a hard link); a symlink loop; an existing file without ``overwrite``; a folder, a path
            under a file, a name too long, no permission (:func:`gan_lightning.trainer.outputs.check_out_file`).
    """
    if not out.strip():
        raise UsageError("--out is required: the weights file to write, e.g. --out lenet_retrained.pt "
                         "(the shipped gan_lightning/weights/lenet_mnist.pt is never overwritten)")
    path = Path(out).expanduser()
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise UsageError(f"--out {out}: a symlink loop; give a file name") from None
    try:
        same = os.path.samefile(path, SHIPPED)  # a hard link too
    except OSError:  # no such file, a name too long: check_out_file says which
        same = False
    if target == SHIPPED.resolve() or same:
        raise UsageError(f"--out {out} is the shipped lenet-mnist weights file {SHIPPED}, which is never "
                         f"overwritten (metrics named fid/lenet_* come from it); write another file")
    check_out_file(path, "--out", overwrite)
    if target != path.absolute():  # a symlink: the file written is the one it points to
        check_out_file(target, "--out", overwrite)
    return target


def save(net: LeNetMNIST, out: Path, overwrite: bool) -> None:
    """Write ``net``'s state dict to ``out`` (from :func:`check_out`) atomically: a temporary file, then a rename.

    Without ``overwrite`` a file that appeared at ``out`` during training is kept, and so are the
    new weights, in the temporary file the error names.
    """
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".train_feature_extractor.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if overwrite:
        os.replace(tmp, out)
        return
    kept = UsageError(f"--out {out} appeared during training and is kept; the new weights are in {tmp}")
    try:
        os.link(tmp, out)  # fails if out exists: never replaces a file silently
    except FileExistsError:
        raise kept from None
    except OSError:  # a file system without hard links
        if out.exists():
            raise kept from None
        os.replace(tmp, out)
        return
    tmp.unlink()


def report(net: LeNetMNIST, out: Path, seconds: float, epochs: int, seed: int) -> str:
    """The lines the script prints: the file, its sha256 and metric names, test accuracy, training time."""
    acc32 = accuracy(net, *digits("test", 32))
    acc28 = accuracy(net, *digits("test", 28))
    sha256 = file_sha256(out)
    return "\n".join([
        f"weights        {out} ({out.stat().st_size / 1e6:.2f} MB)",
        f"sha256         {sha256}",
        f"metric names   {metric_key('fid', 5000, EXTRACTORS['lenet-mnist'].short, sha256)}, ... "
        f"(with --metric_weights {out})",
        f"test accuracy  {acc32:.4f} (mnist5k test, 1,000 digits, 32 px); {acc28:.4f} at 28 px",
        f"training time  {seconds:.0f} s ({epochs} epochs, seed {seed}, {torch.get_num_threads()} CPU threads)",
    ])
