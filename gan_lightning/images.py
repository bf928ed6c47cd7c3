"""The one conversion from model range to pixels, and sample grids.

Any floating dtype comes in (float64 under ``--precision 64-true``, bfloat16 under ``bf16-true``):
``to_uint8`` and ``_to_cpu_float`` compute in float32, which numpy, PIL and matplotlib all read
(numpy has no bfloat16).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor


def to_uint8(images: Tensor) -> Tensor:
    """Map images from the model range [-1, 1] to uint8 [0, 255].

    Args:
        images: (B, C, H, W) floats of any dtype, nominally in [-1, 1]; values outside are clamped.

    Returns:
        (B, C, H, W) uint8 tensor on the same device.
    """
    # float32 arithmetic: in bfloat16 (8 significant bits) (x + 1) * 127.5 would round before round().
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _to_cpu_float(x: Tensor) -> Tensor:
    """A detached float32 CPU copy, which ``.numpy()`` accepts whatever the dtype was."""
    return x.detach().to(device="cpu", dtype=torch.float32)


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """Tile a batch of images into one (H', W', C) uint8 array (C = 1 or 3).

    Args:
        images: (B, C, H, W) in [-1, 1].
        nrow: images per row; default the ceiling of sqrt(B).
        padding: pixels between images.

    Returns:
        (H', W', C) uint8 tensor on the CPU.
    """
    b, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    ncol = math.ceil(b / nrow)
    pixels = to_uint8(_to_cpu_float(images))
    grid = torch.zeros((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), dtype=torch.uint8)
    for i in range(b):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top : top + h, left : left + w] = pixels[i]
    return grid.permute(1, 2, 0)  # (H', W', C)


TITLE_SIZE = 12  # px: the title strip's font above a saved grid


def _wrap(text: str, font, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels: broken after its commas first (``epoch 3,`` /
    ``468 G steps,`` / ``EMA of G (decay 0.999)`` stay whole), at spaces inside a part too long."""
    lines: list[str] = []
    parts = text.split(", ")
    for k, part in enumerate(parts):
        part += "," if k < len(parts) - 1 else ""
        if lines and font.getlength(f"{lines[-1]} {part}") <= width:
            lines[-1] = f"{lines[-1]} {part}"
            continue
        lines.append("")
        for word in part.split():
            if lines[-1] and font.getlength(f"{lines[-1]} {word}") > width:
                lines.append(word)
            else:
                lines[-1] = f"{lines[-1]} {word}".strip()
    return lines


def with_title(grid: Tensor, title: str) -> Tensor:
    """``grid`` with a white strip above it holding ``title`` (wrapped to the grid's width).

    Args:
        grid: (H, W, C) uint8, C = 1 or 3.
        title: one line of text; "" returns ``grid`` unchanged.

    Returns:
        (H + strip, W, C) uint8; rows ``strip:`` are ``grid`` unchanged.
    """
    if not title:
        return grid
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    h, w, c = grid.shape
    try:
        font = ImageFont.load_default(size=TITLE_SIZE)  # a TrueType font, Pillow >= 10.1
    except TypeError:
        font = ImageFont.load_default()
    lines = _wrap(title, font, w - 4)
    line_h = TITLE_SIZE + 3
    strip = Image.new("L", (w, line_h * len(lines) + 4), 255)
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        draw.text((2, 2 + i * line_h), line, fill=0, font=font)
    top = torch.from_numpy(np.array(strip))[..., None].expand(-1, -1, c)  # (strip, W, C)
    return torch.cat([top, grid], dim=0)


def save_image_grid(images: Tensor, path: str | Path, nrow: int | None = None, title: str = "") -> Path:
    """Write a batch of images as one PNG grid, with an optional title strip above it; return its path.

    Args:
        images: (B, C, H, W) in [-1, 1], any floating dtype.
        path: PNG file to write.
        nrow: images per row; default the ceiling of sqrt(B).
        title: text above the grid (which G, after how many steps); "" for none.
    """
    from PIL import Image

    grid = with_title(image_grid(images, nrow), title).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)
    return path


def save_scatter(points: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> Path:
    """Write generated 2-D points (and, in grey, reference points) as a PNG scatter plot.

    Args:
        points: (N, 2) generated points, any floating dtype.
        path: PNG file to write.
        reference: optional (M, 2) real points drawn underneath, any floating dtype.
        title: plot title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ref = _to_cpu_float(reference).numpy()  # (M, 2)
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.75", label="real")
    pts = _to_cpu_float(points).numpy()  # (N, 2)
    ax.scatter(pts[:, 0], pts[:, 1], s=2, c="tab:blue", label="generated")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
