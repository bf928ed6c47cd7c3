"""Data for semi-supervised GAN training: a few labeled examples, many unlabeled ones.

Salimans et al. 2016, "Improved Techniques for Training GANs" (arXiv 1606.03498), sec. 5: the
discriminator is trained on labeled examples (cross-entropy), unlabeled real examples and generated
ones. Following their reference code (``train_mnist_feature_matching.py``):

- the labeled subset is ``labels_per_class`` examples of every class, drawn with a fixed seed that
  is independent of the run seed (the reference's ``--seed_data``), so every run and the supervised
  baseline see the same labels;
- by default the unlabeled set is *all* training images, the labeled ones included (the reference
  copies the whole training set as unlabeled); ``unlabeled="rest"`` keeps only the others;
- an epoch is one pass over the unlabeled set; the labeled subset is cycled alongside it in fresh
  permutations, one labeled batch per unlabeled batch, of the same size;
- G's update matches features against a second pass over the unlabeled set in its own order (the
  reference's ``trainx_unl2``), not against the batch D was just trained on.

Validation and test both run on the data set's held-out ``test`` split, as the reference reports
its test error every epoch; nothing is tuned on it here.
"""

from __future__ import annotations

from typing import Iterator

import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from gan_lightning.data.datasets import DatasetSpec, GANDataModule
from gan_lightning.data.sampling import EpochShuffle, ResumableLoader, epoch_generator
from gan_lightning.errors import UsageError

UNLABELED_CHOICES = ("all", "rest")
G_BATCH_STREAM = 750_001  # EpochShuffle stream of G's unlabeled batches (D's: 0; labels: 500_001)


class LabelSplitError(UsageError, ValueError):
    """A labeled split that cannot be made (bad ``labels_per_class``). Scripts print it as one line."""


def dataset_labels(data: Dataset) -> Tensor:
    """All labels ``y`` of a data set of ``(x, y)`` as a (N,) long tensor (fast for TensorDatasets)."""
    tensors = getattr(data, "tensors", None)
    if tensors is not None:
        return tensors[1].long()
    return torch.stack([torch.as_tensor(data[i][1]) for i in range(len(data))]).long()


def labeled_indices(labels: Tensor, labels_per_class: int, seed: int) -> Tensor:
    """Pick ``labels_per_class`` examples of every class with a fixed seed.

    Classes are visited in sorted order and each draws from one ``torch.Generator`` seeded with
    ``seed``, so the pick depends only on (labels, labels_per_class, seed).

    Args:
        labels: (N,) class labels of the training split.
        labels_per_class: examples to keep per class, >= 1.
        seed: seed of the draw.

    Returns:
        (K * labels_per_class,) sorted indices into ``labels``.

    Raises:
        LabelSplitError: if ``labels_per_class`` is < 1 or more than some class has.
    """
    _check_labels_per_class(labels_per_class)
    classes, counts = torch.unique(labels, return_counts=True)  # sorted
    smallest = int(counts.argmin())
    if labels_per_class > counts[smallest]:
        raise LabelSplitError(
            f"labels_per_class={labels_per_class} is more than the training split has: class "
            f"{int(classes[smallest])} has only {int(counts[smallest])} examples; "
            f"use 1 to {int(counts[smallest])}"
        )
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes.tolist():
        idx = (labels == c).nonzero().squeeze(1)  # (N_c,)
        picks.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    return torch.cat(picks).sort().values


def _check_labels_per_class(labels_per_class: int) -> None:
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise LabelSplitError(f"labels_per_class must be an int >= 1 (labeled examples per class), got {labels_per_class!r}")


class CyclicPermutationSampler(Sampler[int]):
    """Indices ``0..n-1`` in fresh random permutations, back to back, ``num_samples`` in all.

    How the reference code feeds its small labeled set next to the large unlabeled one: every
    labeled example is used once per permutation, however the batches fall. The permutations
    depend only on (``seed``, epoch), not on the global RNG: Lightning calls ``set_epoch`` at the
    start of every epoch, so a run resumed at an epoch boundary (or, through a
    :class:`~gan_lightning.data.sampling.ResumableLoader`, mid-epoch) sees the batches it would have seen.

    Args:
        n: size of the data set.
        num_samples: indices per pass (per epoch).
        seed: seed of the permutations.
    """

    def __init__(self, n: int, num_samples: int, seed: int = 0) -> None:
        if n < 1 or num_samples < 1:
            raise ValueError(f"need n >= 1 and num_samples >= 1, got {n}, {num_samples}")
        self.n, self.num_samples, self.seed, self.epoch = n, num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = epoch_generator(self.seed, self.epoch, stream=500_001)  # apart from EpochShuffle's stream 0
        perms = (self.num_samples + self.n - 1) // self.n
        yield from torch.cat([torch.randperm(self.n, generator=g) for _ in range(perms)])[: self.num_samples].tolist()


class ImagesOnly(Dataset):
    """The ``x`` of a data set of ``(x, y)``: unlabeled data must not carry its labels along."""

    def __init__(self, data: Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Tensor:
        return self.data[i][0]


class SemiSupervisedDataModule(GANDataModule):
    """Training batches of labeled and unlabeled examples; validation/test on the held-out split.

    A training batch is ``{"labeled": (x_lab, y_lab), "unlabeled": x_unl, "unlabeled_g": x_unl2}``
    with ``x_lab`` (B, *data_shape), ``y_lab`` (B,), and ``x_unl``, ``x_unl2`` (B, *data_shape),
    B = ``batch_size``: ``x_unl`` for D's update, ``x_unl2`` (the same set in another order) for
    G's. An epoch is one pass over the unlabeled set (the last partial batch dropped); the labeled
    subset is cycled in fresh permutations alongside it (see :class:`CyclicPermutationSampler`).
    Validation and test batches are ``(x, y)`` of the ``test`` split, ``eval_batch_size`` each.
    ``dataset("train")`` is still the whole training split (what probes and metrics read).

    Args:
        spec: the data set, usually ``DATASETS[name]``; its ``y`` must be class labels.
        labels_per_class: labeled examples kept per class (Salimans et al.: 10 on MNIST).
        image_size: side of the square images.
        batch_size: labeled and unlabeled examples per training batch (each).
        seed: seed of the labeled pick only; fixed by default so the labels do not move with
            the run seed.
        shuffle_seed: seed of the order of the training batches (the run's seed): it depends
            only on (shuffle_seed, epoch), not on the global RNG, so a resumed run continues exactly.
        unlabeled: ``"all"`` (every training image, the labeled ones included, as the reference
            code) or ``"rest"`` (only the images without a label).
        eval_batch_size: examples per validation/test batch.
        num_workers, data_root, download: as for :class:`~gan_lightning.data.datasets.GANDataModule`.

    Raises:
        LabelSplitError: ``labels_per_class`` < 1 here, or more than a class has at ``setup``.
        UsageError: a bad size or an unknown ``unlabeled`` choice.

    Example:
        >>> dm = SemiSupervisedDataModule(DATASETS["mnist5k"], labels_per_class=10, image_size=28)
        >>> dm.setup("fit")
        >>> len(dm.labeled_dataset), len(dm.unlabeled_dataset)
        (100, 4000)
    """

    def __init__(
        self,
        spec: DatasetSpec,
        labels_per_class: int,
        *,
        image_size: int = 28,
        batch_size: int = 100,
        seed: int = 1,
        shuffle_seed: int = 0,
        unlabeled: str = "all",
        eval_batch_size: int = 500,
        num_workers: int = 0,
        data_root: str = "data",
        download: bool = False,
    ) -> None:
        super().__init__(
            spec, image_size=image_size, batch_size=batch_size, num_workers=num_workers,
            data_root=data_root, download=download, seed=shuffle_seed,
        )
        self.shuffle_seed = shuffle_seed
        _check_labels_per_class(labels_per_class)
        if unlabeled not in UNLABELED_CHOICES:
            raise UsageError(f"unlabeled={unlabeled!r} is not supported; choose one of {list(UNLABELED_CHOICES)}")
        if eval_batch_size < 1:
            raise UsageError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
        if spec.kind != "images":
            raise UsageError(f"semi-supervised learning needs a labeled image data set, got {spec.kind}")
        self.labels_per_class = labels_per_class
        self.label_seed = seed
        self.unlabeled = unlabeled
        self.eval_batch_size = eval_batch_size
        self.labeled_index: Tensor | None = None  # (K * labels_per_class,) into dataset("train")

    def check(self) -> None:
        """As :meth:`GANDataModule.check`, then draw the labeled split: a bad ``labels_per_class`` fails early."""
        super().check()
        self.setup()

    def setup(self, stage: str | None = None) -> None:
        train = self.dataset("train")
        if self.labeled_index is None:
            self.labeled_index = labeled_indices(dataset_labels(train), self.labels_per_class, self.label_seed)

    @property
    def labeled_dataset(self) -> Dataset:
        """The labeled subset, ``(x, y)`` items. Needs ``setup()``."""
        return Subset(self.dataset("train"), self._index().tolist())

    @property
    def unlabeled_dataset(self) -> Dataset:
        """The unlabeled set, ``x`` items only. Needs ``setup()``."""
        train = self.dataset("train")
        if self.unlabeled == "all":
            return ImagesOnly(train)
        rest = torch.ones(len(train), dtype=torch.bool)
        rest[self._index()] = False
        return ImagesOnly(Subset(train, rest.nonzero().squeeze(1).tolist()))

    def _index(self) -> Tensor:
        if self.labeled_index is None:
            raise RuntimeError("call setup() before asking for the labeled or unlabeled data")
        return self.labeled_index

    def _loader(self, data: Dataset, loader: type[DataLoader] = ResumableLoader, **kwargs) -> DataLoader:
        # Its own generator: a new iterator draws a base seed, which must not move the global RNG.
        return loader(data, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                      generator=torch.Generator().manual_seed(self.shuffle_seed), **kwargs)

    def labeled_dataloader(self, num_batches: int) -> DataLoader:
        """``num_batches`` labeled batches (x (B, ...), y (B,)), the subset cycled in fresh permutations."""
        return self._loader(
            self.labeled_dataset, batch_size=self.batch_size,
            sampler=CyclicPermutationSampler(len(self._index()), num_batches * self.batch_size, self.shuffle_seed),
        )

    def train_dataloader(self) -> CombinedLoader:
        unlabeled = self.unlabeled_dataset
        if len(unlabeled) < self.batch_size:
            raise UsageError(f"batch_size={self.batch_size} is larger than the {len(unlabeled)} unlabeled examples")
        unl, unl_g = (
            self._loader(unlabeled, batch_size=self.batch_size, drop_last=True,
                         sampler=EpochShuffle(len(unlabeled), self.shuffle_seed, stream))
            for stream in (0, G_BATCH_STREAM)
        )
        # Same number of batches on every side, so no mode of CombinedLoader truncates or repeats.
        lab = self.labeled_dataloader(len(unl))
        return CombinedLoader({"labeled": lab, "unlabeled": unl, "unlabeled_g": unl_g}, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"), DataLoader, batch_size=self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
