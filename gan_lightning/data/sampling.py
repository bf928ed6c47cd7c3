"""Shuffling and loading that a resumed run can replay exactly: the order of an epoch depends only
on (seed, epoch, stream), and the loader's position within the epoch is saved in checkpoints.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A torch.Generator that depends only on (seed, epoch, stream): what resumable samplers draw from.

    ``stream`` keeps two samplers of one run (e.g. unlabeled and labeled batches) apart.
    """
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + stream)


class EpochShuffle(Sampler[int]):
    """A shuffle that depends only on (seed, epoch, stream), not on the global RNG.

    Lightning calls ``set_epoch`` at the start of every epoch, so a run resumed at an epoch
    boundary sees exactly the batches it would have seen without stopping; served by a
    :class:`ResumableLoader`, a run resumed mid-epoch does too. (Under DDP Lightning wraps it in
    a DistributedSamplerWrapper, which is seeded by epoch the same way.)
    """

    def __init__(self, n: int, seed: int = 0, stream: int = 0) -> None:
        self.n, self.seed, self.stream, self.epoch = n, seed, stream, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = epoch_generator(self.seed, self.epoch, self.stream)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class ResumableLoader(DataLoader):
    """A DataLoader that a checkpoint written mid-epoch resumes at the next batch of the same order.

    Lightning stores ``state_dict()`` of every training loader in each checkpoint
    (with the training loop's state, under ``loops``) and hands it to ``load_state_dict`` when it
    resumes mid-epoch; for a loader without them it warns and the resumed epoch starts the
    batch order over (batches seen twice, others never). The state here is the number of
    batches the epoch's iterator has handed out; the next iterator leaves that many out, drawing
    their indices but loading nothing. With a sampler whose order depends only on (seed, epoch),
    such as :class:`EpochShuffle` (or the DistributedSampler DDP puts around it, each rank
    skipping its own batches), the resumed epoch serves exactly the batches the uninterrupted
    one would have.

    The underlying iterator is made at the first ``next()``: Lightning makes the iterator before
    it calls ``set_epoch`` when it resumes, and worker processes would otherwise prefetch indices
    of the sampler's previous epoch.

    Takes the arguments of ``DataLoader``.
    """

    _served = 0  # batches handed out by the current pass, skipped ones included
    _skip = 0  # batches the next pass leaves out (set by load_state_dict)
    _skipping = 0  # batches the current pass leaves out

    def state_dict(self) -> dict[str, int]:
        return {"batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        served = int(state["batches_served"])
        self._skip = served if served < len(self) else 0  # a finished epoch: the next one starts afresh

    def __iter__(self) -> Iterator[Any]:
        return self._serve()

    def _serve(self) -> Iterator[Any]:
        self._skipping, self._skip = self._skip, 0
        self._served = self._skipping
        for batch in super().__iter__():  # draws its indices through _index_sampler
            self._served += 1
            yield batch

    @property
    def _index_sampler(self) -> Any:
        # What DataLoader's iterators draw (batches of) indices from, at every pass (and, making a
        # worker iterator, more than once per pass), with persistent workers or not.
        return _SkipFirst(super()._index_sampler, self)


class _SkipFirst:
    """The index sampler of a :class:`ResumableLoader`: leaves out the first ``_skipping`` items of a pass."""

    def __init__(self, index_sampler: Any, loader: ResumableLoader) -> None:
        self.index_sampler, self.loader = index_sampler, loader

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.index_sampler), self.loader._skipping, None)

    def __len__(self) -> int:
        return len(self.index_sampler)


# ---------------------------------------------------------------------------------------------
