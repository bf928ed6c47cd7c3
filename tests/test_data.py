"""Tests for gan_lightning.data.datasets: built-in sets, splits, the DataModule and folder checks (offline, CPU)."""

import dataclasses
import subprocess
import sys

import pytest
import torch
from PIL import Image

from gan_lightning.data import datasets as data
from gan_lightning.runs.cli import run_cli
from gan_lightning.data.datasets import DATASETS, GANDataModule, data_shape, grid_modes, ring_modes
from gan_lightning.errors import DataError
from gan_lightning.runs.training import main

BUILTIN_IMAGES = ["digits", "mnist5k"]


def _tensors(ds):
    """All (x, y) of a TensorDataset or any small dataset, stacked."""
    if hasattr(ds, "tensors"):
        return ds.tensors
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.stack(ys)


def _rows(x):
    return {row.numpy().tobytes() for row in x.reshape(len(x), -1)}


def test_import_loads_no_dataset_library():
    # lightning itself pulls in torchvision (through torchmetrics), so only what data.py adds counts.
    code = (
        "import sys, lightning; had_tv = 'torchvision' in sys.modules; import gan_lightning.data.datasets; "
        "bad = [m for m in ('sklearn', 'mlxtend') if m in sys.modules]; "
        "bad += ['torchvision'] if 'torchvision' in sys.modules and not had_tv else []; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_table_entries(name):
    spec = DATASETS[name]
    assert spec.kind in {"points", "images"}
    assert (spec.channels == 0) == (spec.kind == "points")
    assert spec.description and "\n" not in spec.description
    assert spec.builtin == (name in {"ring", "grid", "digits", "mnist5k"})
    assert data_shape(spec, 16) == ((2,) if spec.kind == "points" else (spec.channels, 16, 16))


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_points_shapes_splits_and_determinism(name):
    spec = DATASETS[name]
    train, test = spec.load("train", 32, "unused", False), spec.load("test", 32, "unused", False)
    (x, y), (x_test, _) = train.tensors, test.tensors
    assert x.shape == (10_000, 2) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x_test.shape == (2_000, 2)
    assert not _rows(x) & _rows(x_test)
    torch.testing.assert_close(spec.load("train", 8, "unused", False).tensors[0], x, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, modes, std", [("ring", ring_modes(), data.RING_STD), ("grid", grid_modes(), data.GRID_STD)]
)
def test_points_sit_on_their_modes(name, modes, std):
    x, y = DATASETS[name].load("train", 32, "unused", False).tensors
    dist = torch.cdist(x, modes)  # (N, modes)
    assert torch.equal(dist.argmin(dim=1), y), "the label is the nearest mode"
    assert dist.min(dim=1).values.max() < 6 * std
    assert torch.bincount(y, minlength=len(modes)).min() > 0.5 * len(x) / len(modes)


def test_mode_centres():
    assert ring_modes().shape == (8, 2) and grid_modes().shape == (25, 2)
    torch.testing.assert_close(ring_modes().norm(dim=1), torch.full((8,), 2.0))
    assert set(grid_modes().flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert len(_rows(grid_modes())) == 25


def test_ring_points_lie_near_radius_two():
    x, _ = DATASETS["ring"].load("train", 32, "unused", False).tensors
    radius = x.norm(dim=1)
    assert (radius - 2.0).abs().max() < 0.15
    assert abs(radius.mean().item() - 2.0) < 0.01


@pytest.mark.parametrize(
    "name, image_size", [("digits", 8), ("digits", 28), ("digits", 32), ("mnist5k", 28), ("mnist5k", 32)]
)
def test_builtin_images_shape_dtype_range(name, image_size):
    x, y = DATASETS[name].load("train", image_size, "unused", False).tensors
    assert x.shape[1:] == (1, image_size, image_size)
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() == -1.0 and x.max() > 0.9, "background is black and strokes are bright"
    assert x[0].shape == data_shape(DATASETS[name], image_size)


def test_digits_at_native_size_is_the_raw_data_rescaled():
    from sklearn.datasets import load_digits

    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)  # (1797, 8, 8) in 0..16
    x, _ = DATASETS["digits"].load("train", 8, "unused", False).tensors
    assert _rows(x[:, 0]) <= _rows(raw / 8.0 - 1.0)


@pytest.mark.parametrize("name, n_total", [("digits", 1797), ("mnist5k", 5000)])
def test_builtin_splits_disjoint_and_complete(name, n_total):
    spec = DATASETS[name]
    x_train, _ = spec.load("train", 28, "unused", False).tensors
    x_test, _ = spec.load("test", 28, "unused", False).tensors
    assert len(x_train) + len(x_test) == n_total
    assert not _rows(x_train) & _rows(x_test)


def test_digits_split_is_deterministic_and_stratified():
    first = DATASETS["digits"].load("test", 8, "unused", False).tensors
    data._digits_arrays.cache_clear()  # rebuild the split from scratch
    torch.manual_seed(123)  # the run seed must not move the split
    second = DATASETS["digits"].load("test", 8, "unused", False).tensors
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    per_class = torch.bincount(second[1], minlength=10)
    all_labels = data._digits_arrays()[1]
    expected = torch.tensor([round(0.2 * n) for n in torch.bincount(all_labels).tolist()])
    assert torch.equal(per_class, expected)


def test_mnist5k_test_has_100_per_class_and_is_deterministic():
    x, y = DATASETS["mnist5k"].load("test", 32, "unused", False).tensors
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 100))
    _, y_train = DATASETS["mnist5k"].load("train", 32, "unused", False).tensors
    assert torch.equal(torch.bincount(y_train, minlength=10), torch.full((10,), 400))
    x_again, _ = DATASETS["mnist5k"].load("test", 32, "unused", False).tensors
    torch.testing.assert_close(x_again, x, rtol=0, atol=0)


def test_unknown_split_is_a_data_error():
    with pytest.raises(DataError, match="valid splits"):
        DATASETS["ring"].load("val", 32, "unused", False)


def test_datamodule_mnist5k_batches():
    dm = GANDataModule(DATASETS["mnist5k"], image_size=32, batch_size=64)
    assert dm.data_shape == (1, 32, 32)
    dm.check()  # built-in: no folder to look for; loads the train split
    dm.setup("fit")
    assert dm.dataset("train") is dm.dataset("train"), "splits are cached"
    batches = list(dm.train_dataloader())
    assert len(batches) == 4000 // 64
    assert all(x.shape == (64, 1, 32, 32) and y.shape == (64,) for x, y in batches), "drop_last"
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.long


def test_datamodule_data_shape_needs_no_loading(tmp_path):
    dm = GANDataModule(DATASETS["cifar10"], image_size=64, data_root=str(tmp_path / "missing"))
    assert dm.data_shape == (3, 64, 64)
    assert GANDataModule(DATASETS["ring"]).data_shape == (2,)


@pytest.mark.parametrize("name, looked_for", [("cifar10", "cifar-10-batches-py"), ("mnist", "MNIST"), ("folder", "")])
def test_check_missing_folder_is_one_line_data_error(tmp_path, name, looked_for):
    root = tmp_path / "nowhere"
    dm = GANDataModule(DATASETS[name], data_root=str(root))
    with pytest.raises(DataError) as err:
        dm.check()
    message = str(err.value)
    assert str(root) in message and looked_for in message
    assert "--download" in message and "--data_root" in message
    assert "\n" not in message
    with pytest.raises(DataError):  # loading looks in the same place
        dm.setup()


def test_spec_check_finds_torchvision_layout(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    DATASETS["mnist"].check(str(tmp_path), False)
    DATASETS["fashion_mnist"].check(str(tmp_path), True)  # the layout is fine: loading will fetch
    with pytest.raises(DataError, match="FashionMNIST"):
        DATASETS["fashion_mnist"].check(str(tmp_path), False)


@pytest.fixture
def no_network(monkeypatch):
    """urlopen fails as it does offline; returns the URLs that were tried."""
    import urllib.error
    import urllib.request

    tried = []

    def urlopen(request, *args, **kwargs):
        tried.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return tried


@pytest.mark.parametrize("download", [False, True])
def test_corrupt_files_fail_check_as_one_line(tmp_path, no_network, download):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    DATASETS["cifar10"].check(str(tmp_path), download)  # the folder is there ...
    dm = GANDataModule(DATASETS["cifar10"], data_root=str(tmp_path), download=download)
    with pytest.raises(DataError, match="could not be read") as err:
        dm.check()  # ... but torchvision cannot read it, which check() finds by loading the train split
    message = str(err.value)
    assert "\n" not in message
    if download:  # torchvision tried to fetch intact files again: advising --download would not help
        assert no_network and "could not be read or downloaded" in message and "pass --download" not in message
        assert "cifar-10-python.tar.gz" in message
    else:
        assert not no_network and "pass --download" in message


def test_check_loads_the_train_split_once():
    calls = []

    def load(split, *args):
        calls.append(split)
        return DATASETS["ring"].load(split, *args)

    dm = GANDataModule(dataclasses.replace(DATASETS["ring"], load=load))
    dm.check()
    assert calls == ["train"], "check() loads the train split, so a load error comes before the Trainer"
    dm.setup("fit")
    dm.train_dataloader()
    assert calls == ["train"], "setup() reuses it"


@pytest.mark.parametrize("name, url, where", [
    ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-batches-py"),
    ("mnist", "train-images-idx3-ubyte.gz", "MNIST/raw"),
    ("fashion_mnist", "t10k-labels-idx1-ubyte.gz", "FashionMNIST/raw"),
])
def test_failed_download_fails_before_anything_is_written(tmp_path, capsys, no_network, name, url, where):
    data_root, out = tmp_path / "data", tmp_path / "runs"
    argv = ["--dataset", name, "--download", "--data_root", str(data_root), "--out_dir", str(out),
            "--max_steps", "2", "--logger", "none", "--metric_every_n_epochs", "0"]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: downloading {name!r} into {data_root} failed (") and err.count("\n") == 1
    assert no_network, "the download was tried"
    assert "no network?" in err and url in err and str(data_root / where) in err and "then run again" in err
    assert "pass --download" not in err
    assert not out.exists()


def test_lsun_download_explains_how_to_get_it(tmp_path):
    dm = GANDataModule(DATASETS["lsun"], data_root=str(tmp_path), download=True)
    with pytest.raises(DataError, match="cannot download LSUN"):
        dm.check()
    with pytest.raises(DataError, match="bedroom_train_lmdb") as err:
        GANDataModule(DATASETS["lsun"], data_root=str(tmp_path)).check()
    assert "fyu/lsun" in str(err.value) and "pass --download to fetch" not in str(err.value)


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of three small RGB PNGs with different sizes, so Resize + CenterCrop both work."""
    g = torch.Generator().manual_seed(0)
    for c, cls in enumerate(["cats", "dogs"]):
        (tmp_path / cls).mkdir()
        for i in range(3):
            pixels = torch.randint(0, 256, (20 + 7 * i, 30 + 5 * c, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(tmp_path / cls / f"{i}.png")
    return tmp_path


def test_folder_dataset(image_folder):
    dm = GANDataModule(DATASETS["folder"], image_size=32, batch_size=64, data_root=str(image_folder))
    dm.check()
    x, y = _tensors(dm.dataset("train"))
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.9 and x.max() > 0.9
    assert y.dtype == torch.long and torch.equal(y, torch.tensor([0, 0, 0, 1, 1, 1]))
    (batch, labels), = list(dm.train_dataloader())  # 6 < batch_size: keep the partial batch
    assert batch.shape == (6, 3, 32, 32) and labels.shape == (6,)
    with pytest.raises(DataError, match="folder has no test split"):
        dm.dataset("test")


def test_folder_without_images_fails_check(tmp_path):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="--data_root"):
        GANDataModule(DATASETS["folder"], data_root=str(tmp_path)).check()
