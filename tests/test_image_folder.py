"""Tests for gan_lightning.data.image_folder: the ``folder`` set's layout, bad images and the guarded loader.

Every bad input goes through scripts/train.py's entry point (``run_cli`` in this process) and must
end with exit code 2 and one ``error:`` line naming the file; where ``check()`` can see the problem,
nothing is written under ``--out_dir``.
"""

import io
import struct
import zlib

import pytest
import torch
from PIL import Image
from torch._utils import ExceptionWrapper

from gan_lightning.runs.cli import run_cli
from gan_lightning.data.datasets import DATASETS, GANDataModule
from gan_lightning.errors import DataError
from gan_lightning.data.image_folder import UnreadableImageError, check_images, image_problem, read_rgb
from gan_lightning.runs.training import main

# 7 images < batch_size 8: one batch of every image per epoch, so a bad file is read at step 1.
TINY = ["--dataset", "folder", "--arch", "mlp", "--image_size", "8", "--batch_size", "8", "--z_dim", "4",
        "--g_width", "8", "--d_width", "8", "--max_steps", "2", "--metric_every_n_epochs", "0",
        "--logger", "none", "--diagnostics", "false"]


def _encoded(fmt: str, size: int = 12, seed: int = 0) -> bytes:
    pixels = torch.randint(0, 256, (size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buf, fmt)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with no pixel data: what a
    decompression bomb looks like to ``Image.open``, which reads only the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


# name -> (file name, bytes); each passes the extension filter and fails at check() time.
BAD = {
    "corrupt": ("bad.png", lambda: b"this is not an image"),
    "truncated_png": ("bad.png", lambda: _cut(_encoded("PNG"))),
    "truncated_jpeg": ("bad.jpg", lambda: _cut(_encoded("JPEG", 32))),
    "bomb": ("bad.png", lambda: _png_claiming(20_000, 20_000)),  # over twice PIL's limit: PIL raises
    "over_limit": ("bad.png", lambda: _png_claiming(10_000, 10_000)),  # over the limit, where PIL only warns
}


@pytest.fixture
def folder(tmp_path):
    """``data/{cats,dogs}`` with three (cats) and four (dogs) small PNGs."""
    root = tmp_path / "data"
    for c, (cls, n) in enumerate([("cats", 3), ("dogs", 4)]):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{i}.png").write_bytes(_encoded("PNG", seed=10 * c + i))
    return root


def _train(tmp_path, root, *extra) -> int:
    return run_cli(main, [*TINY, "--data_root", str(root), "--out_dir", str(tmp_path / "runs"), *extra])


def _one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    return err


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_image_fails_before_anything_is_written(tmp_path, folder, capsys, kind, num_workers):
    name, make = BAD[kind]
    bad = folder / "cats" / name
    bad.write_bytes(make())
    assert _train(tmp_path, folder, "--num_workers", str(num_workers)) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert f"1 of 8 images under {folder} cannot be read: {bad} (" in err and "delete or replace" in err
    assert ("MAX_IMAGE_PIXELS" in err) == (kind in ("bomb", "over_limit"))
    assert not (tmp_path / "runs").exists()


def test_check_names_a_few_bad_files_and_counts_the_rest(folder):
    bad = [folder / "dogs" / f"bad{i}.png" for i in range(5)]
    for path in bad:
        path.write_bytes(b"junk")
    with pytest.raises(DataError) as err:
        GANDataModule(DATASETS["folder"], data_root=str(folder)).check()
    message = str(err.value)
    assert "5 of 12 images" in message and "and 2 more" in message and "\n" not in message
    assert sum(str(path) in message for path in bad) == 3


@pytest.mark.parametrize("num_workers", [0, 2])
def test_image_bad_only_when_decoded_ends_as_one_line_naming_it(tmp_path, folder, capsys, num_workers):
    # A truncated BMP has a valid header: only decoding shows the missing rows, in a worker when there are workers.
    bad = folder / "dogs" / "bad.bmp"
    bad.write_bytes(_cut(_encoded("BMP", 32)))
    assert image_problem(str(bad)) is None
    assert _train(tmp_path, folder, "--num_workers", str(num_workers)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [err.splitlines()[-1]] and "Traceback" not in err and "worker" not in err
    assert errors[0].startswith(f"error: image {bad} cannot be read (OSError: image file is truncated")
    assert errors[0].endswith("; delete or replace it and run again")


def test_worker_error_comes_back_as_its_own_line():
    # What torch's DataLoader does with an exception raised in a worker process.
    try:
        raise UnreadableImageError("image x.png cannot be read (OSError: broken)")
    except UnreadableImageError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 1")
    with pytest.raises(UnreadableImageError) as err:
        wrapped.reraise()
    assert str(err.value) == "image x.png cannot be read (OSError: broken)"
    assert isinstance(err.value, DataError)


def test_loader_refuses_a_bomb_without_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming(10_000, 10_000))
    with pytest.raises(UnreadableImageError, match="DecompressionBombWarning") as err:
        read_rgb(str(path))  # decoding the header-only file would fail with "truncated" instead
    assert str(path) in str(err.value)
    good = tmp_path / "good.png"
    good.write_bytes(_encoded("PNG", 5))
    assert read_rgb(str(good)).size == (5, 5)


def test_jpeg_with_trailing_bytes_is_not_truncated(tmp_path):
    jpeg = _encoded("JPEG", 32)
    (tmp_path / "trailing.jpg").write_bytes(jpeg + b"\0" * 64)  # some cameras pad after the end marker
    (tmp_path / "cut.jpg").write_bytes(_cut(jpeg))
    assert image_problem(str(tmp_path / "trailing.jpg")) is None
    assert "image file is truncated" in image_problem(str(tmp_path / "cut.jpg"))
    check_images([str(tmp_path / "trailing.jpg")], str(tmp_path))


def test_images_without_class_subfolders_say_what_is_expected(tmp_path, capsys):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.png").write_bytes(_encoded("PNG", seed=i))
    assert _train(tmp_path, root) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert f"--data_root {root} holds 3 images but no class subfolders" in err
    assert f"put the images in {root / 'all'}/" in err and "not found" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("empty", ["zebras", ".ipynb_checkpoints"])
def test_empty_class_subfolder_fails_before_anything_is_written(tmp_path, folder, capsys, empty):
    (folder / empty).mkdir()
    (folder / empty / "notes.txt").write_text("not an image")
    (folder / "loose.png").write_bytes(_encoded("PNG"))
    assert _train(tmp_path, folder) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert f"class subfolder {folder / empty} holds no images (.jpg" in err
    assert "add images or remove the folder" in err and f"the 1 images directly in {folder} are not read" in err
    assert not (tmp_path / "runs").exists()


def test_good_folder_trains(tmp_path, folder, capsys):
    assert _train(tmp_path, folder) == 0
    assert "error" not in capsys.readouterr().err
    assert list((tmp_path / "runs").glob("*/samples/*.png"))
