"""Tests for gan_lightning.images: pixels, grids and scatter plots from any floating dtype, and
sample writing at every --precision."""

import numpy as np
import pytest
import torch
from PIL import Image

from gan_lightning.runs.cli import run_cli
from gan_lightning.images import image_grid, save_image_grid, save_scatter, to_uint8
from gan_lightning.runs.training import main

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
DTYPE_IDS = [str(d).removeprefix("torch.") for d in DTYPES]


def test_to_uint8_maps_the_model_range_to_pixels():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 7)
    # round(127.5 * (x + 1)) after clamping to [-1, 1]: 63.75, 127.5 (half to even), 191.25 -> 64, 128, 191
    expected = torch.tensor([0, 0, 64, 128, 191, 255, 255], dtype=torch.uint8).view(1, 1, 1, 7)
    assert torch.equal(to_uint8(x), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_to_uint8_computes_in_float32_whatever_the_dtype(dtype):
    x = torch.linspace(-1, 1, 512).to(dtype)  # values exactly representable in dtype
    # In bfloat16, (x + 1) * 127.5 would be rounded to 8 significant bits before round().
    assert torch.equal(to_uint8(x), to_uint8(x.float()))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_save_image_grid_any_dtype(tmp_path, dtype):
    images = (torch.rand(5, 3, 6, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dtype)
    path = save_image_grid(images, tmp_path / "grid.png", nrow=3)
    pixels = torch.from_numpy(np.array(Image.open(path)))  # (H', W', 3)
    assert pixels.shape == (2 * (6 + 2) + 2, 3 * (7 + 2) + 2, 3)
    assert torch.equal(pixels, image_grid(images.float(), nrow=3))
    assert torch.equal(pixels[2:8, 2:9], to_uint8(images[0].float()).permute(1, 2, 0)), "first image at top left"


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_save_scatter_any_dtype(tmp_path, dtype):
    points = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)).to(dtype)
    reference = torch.randn(80, 2, generator=torch.Generator().manual_seed(1)).to(dtype)
    path = save_scatter(points, tmp_path / "scatter.png", reference, title=str(dtype))
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (400, 400)


@pytest.mark.parametrize("dataset", ["ring", "grid"])
@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_points_run_writes_samples_at_any_precision(tmp_path, capsys, dataset, precision):
    out = tmp_path / "runs"
    argv = ["--dataset", dataset, "--precision", precision, "--max_steps", "3", "--batch_size", "32",
            "--g_width", "8", "--d_width", "8", "--metric_every_n_epochs", "0", "--logger", "none",
            "--out_dir", str(out), "--run_name", "r"]
    assert run_cli(main, argv) == 0, capsys.readouterr().err[-2000:]
    assert list((out / "r" / "samples").glob("*.png"))


def test_a_titled_grid_has_its_title_in_a_strip_above_the_unchanged_grid(tmp_path):
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = image_grid(images)  # (82, 82, 1)
    path = save_image_grid(images, tmp_path / "grid.png", title="epoch 3, 468 G steps, EMA of G (decay 0.999)")
    pixels = torch.from_numpy(np.array(Image.open(path)))  # (strip + 82, 82), grey
    strip = pixels.shape[0] - plain.shape[0]
    assert pixels.shape[1] == plain.shape[1] and strip > 12  # one line of text at least, as wide as the grid
    assert torch.equal(pixels[strip:], plain[..., 0]), "the grid below the strip is pixel for pixel the plain one"
    assert (pixels[:strip] < 128).any() and (pixels[:strip] == 255).float().mean() > 0.5  # dark text on white


def test_a_long_title_breaks_after_its_commas():
    from PIL import ImageFont

    from gan_lightning.images import TITLE_SIZE, _wrap

    font = ImageFont.load_default(size=TITLE_SIZE)
    title = "epoch 3, 468 G steps, EMA of G (decay 0.999)"
    assert _wrap(title, font, 1000) == [title]
    assert _wrap(title, font, 160) == ["epoch 3, 468 G steps,", "EMA of G (decay 0.999)"]
