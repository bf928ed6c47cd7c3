"""FID, KID, Inception score and precision/recall of generated images against a reference set.

The maths is torch-fidelity's: its feature -> metric functions are called on features from
:mod:`gan_lightning.metrics.extractors`, so the numbers equal ``torch_fidelity.calculate_metrics`` on the
same images and extractor (KID subsets and the IS shuffle use its default seed, 2020). This module
adds what a training run needs around them:

- the logged names come from :mod:`gan_lightning.metrics.keys`.
- :func:`real_stats_key`, the one place a cache key of real features is built. It holds everything
  that changes the numbers: data set (and, for data read from disk, its folder), split, image
  size, number of real images, extractor and the sha256 of its weights file, and a format version.
  Real features are computed once per key and kept under :func:`cache_dir` as
  ``<key>.pt`` (read back with ``weights_only=True``), so a second evaluation only does the
  generated half of the work.
- :func:`latents`: sample i's latent depends on (seed, i) only, not on the batch size or the
  number of processes, so a DDP evaluation scores exactly the samples a single process would.

Precision/recall (Kynkäänniemi et al. 2019, k = 3) and density/coverage (Naeem et al. 2020, k = 5,
:mod:`gan_lightning.metrics.density_coverage`) are computed in the chosen extractor's feature
space, not in VGG16's as in the papers; like every number here they are only comparable under the
same key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from gan_lightning.errors import UsageError
from gan_lightning.metrics.density_coverage import NEIGHBORHOOD as DC_NEIGHBORHOOD
from gan_lightning.metrics.density_coverage import density_coverage
from gan_lightning.metrics.extractors import Extractor
from gan_lightning.metrics.keys import METRICS, metric_key, parse_metrics
from gan_lightning.images import to_uint8

CACHE_ENV = "GAN_LIGHTNING_CACHE"
CACHE_VERSION = 1  # bump when the way real features are computed changes
FIDELITY_SEED = 2020  # torch-fidelity's default rng_seed: KID subsets and the IS shuffle
LATENT_CHUNK = 1024  # latents are drawn in chunks of this many, one seed per chunk


# -- reference data and its cache -------------------------------------------------------------
def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder of cached real features: ``explicit``, else ``$GAN_LIGHTNING_CACHE``, else ~/.cache/gan_lightning."""
    chosen = explicit or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gan_lightning"
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class Reference:
    """The real images generated ones are compared with.

    Args:
        dataset: a key of ``gan_lightning.data.datasets.DATASETS``.
        split: ``train`` or ``test``.
        image_size: side of the images, as the generator makes them.
        num_real: how many real images (0: the whole split). A subset is a fixed random draw.
        data_root: where non-built-in data sets are read from.
    """

    dataset: str
    split: str = "test"
    image_size: int = 32
    num_real: int = 0
    data_root: str = "data"

    def load(self) -> Dataset:
        """The reference images as a Dataset of ``(x, y)``; raises UsageError (DataError) if unreadable."""
        from gan_lightning.data.datasets import DATASETS

        if self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}; valid data sets are: {', '.join(DATASETS)}")
        spec = DATASETS[self.dataset]
        spec.check(self.data_root, False)
        data = spec.load(self.split, self.image_size, self.data_root, False)
        if 0 < self.num_real < len(data):
            # A fixed draw across classes: built-in sets are stored sorted by class.
            pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: self.num_real]
            data = Subset(data, pick.sort().values.tolist())
        return data


def real_stats_key(reference: Reference, num_real: int, extractor: str, weights_sha256: str) -> str:
    """The cache key of real features: everything that changes them, and nothing else.

    Args:
        reference: data set, split, image size (and data_root for sets read from disk).
        num_real: the number of real images actually used.
        extractor: the extractor's name.
        weights_sha256: sha256 of the extractor's weights file: new weights never reuse old features.

    Returns:
        A file-name-safe string, e.g. ``mnist5k-test-32px-n1000-lenet-mnist-<sha256>-v1``.
    """
    from gan_lightning.data.datasets import DATASETS

    parts = [reference.dataset, reference.split, f"{reference.image_size}px", f"n{num_real}", extractor,
             weights_sha256, f"v{CACHE_VERSION}"]
    spec = DATASETS.get(reference.dataset)
    if spec is None or not spec.builtin:  # the same name may sit in different folders
        root = os.path.abspath(os.path.expanduser(reference.data_root))
        parts.insert(1, "root" + hashlib.sha256(root.encode()).hexdigest()[:12])
    return "-".join(parts)


# -- samples ----------------------------------------------------------------------------------
def shard(num_samples: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of the samples ``rank`` generates: num // world each, one more for the first num % world."""
    base, extra = divmod(num_samples, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def latents(seed: int, start: int, end: int, z_dim: int) -> Tensor:
    """Latents of samples ``start..end-1``: (end - start, z_dim) N(0, I) on the CPU.

    Chunk c of ``LATENT_CHUNK`` rows comes from its own generator seeded by (seed, c), so
    sample i's latent is the same whatever the batch size or the number of processes.
    """
    rows = []
    for c in range(start // LATENT_CHUNK, (end - 1) // LATENT_CHUNK + 1 if end > start else 0):
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        chunk = torch.randn(LATENT_CHUNK, z_dim, generator=g)  # (LATENT_CHUNK, z_dim)
        lo, hi = max(start, c * LATENT_CHUNK), min(end, (c + 1) * LATENT_CHUNK)
        rows.append(chunk[lo - c * LATENT_CHUNK : hi - c * LATENT_CHUNK])
    return torch.cat(rows) if rows else torch.empty(0, z_dim)


def generate_samples(generate: Callable[[Tensor], Tensor], z_dim: int, start: int, end: int, seed: int,
                     batch_size: int, device: torch.device | str, progress: bool = False,
                     desc: str = "generating") -> Iterable[Tensor]:
    """Yield G's samples ``start..end-1`` in batches, from :func:`latents` moved to ``device``."""
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (a log file)
    with tqdm(total=end - start, desc=desc, unit="img", leave=False, disable=None if progress else True) as bar:
        for lo in range(start, end, batch_size):
            hi = min(end, lo + batch_size)
            yield generate(latents(seed, lo, hi, z_dim).to(device))  # (b, *data_shape)
            bar.update(hi - lo)


# -- the metrics ------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """One evaluation: raw values (``fid``, ``kid_mean``, ...) and how they were measured."""

    values: dict[str, float]
    extractor: str
    extractor_short: str
    extractor_sha256: str
    num_samples: int
    real_stats_cached: bool
    seconds: float = 0.0

    def logged(self, ema: bool = False) -> dict[str, float]:
        """The values under their logged names (:func:`metric_key`, marked when the weights are not the reference;
        ``ema``: the samples came from the EMA of G's weights)."""
        return {metric_key(k, self.num_samples, self.extractor_short, self.extractor_sha256, ema): v
                for k, v in self.values.items()}


class FidelityMetrics:
    """FID/KID/IS/precision-recall of generated images against one reference, in one feature space.

    Args:
        reference: the real images.
        extractor: a loaded :class:`~gan_lightning.metrics.extractors.Extractor` (its device is used).
        metrics: a subset of ``METRICS``.
        kid_subsets: KID subsets (100 by convention).
        kid_subset_size: samples per KID subset (1,000 by convention); generated and real
            sample counts must both reach it.
        isc_splits: Inception-score splits (10 by convention).
        prc_neighborhood: k of the k-NN balls of precision/recall (3, as in the paper).
        batch_size: images per extractor call.
        cache: folder of cached real features; None for :func:`cache_dir`'s default.
        progress: show tqdm bars.
        flags: how messages spell the settings a user can change (``num_samples``, ``num_real``,
            ``kid_subset_size``, ``metrics``), e.g. ``{"num_samples": "--num_samples"}``; default
            the argument names.

    Raises:
        UsageError: an unknown metric or a non-positive count.
    """

    def __init__(self, reference: Reference, extractor: Extractor, metrics: Iterable[str] = METRICS, *,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, isc_splits: int = 10,
                 prc_neighborhood: int = 3, batch_size: int = 250, cache: str | os.PathLike | None = None,
                 progress: bool = False, flags: Mapping[str, str] | None = None) -> None:
        for name, value in (("kid_subsets", kid_subsets), ("kid_subset_size", kid_subset_size),
                            ("isc_splits", isc_splits), ("prc_neighborhood", prc_neighborhood),
                            ("batch_size", batch_size)):
            if value < 1:
                raise UsageError(f"--{name}: must be >= 1, got {value}")
        self.reference = reference
        self.extractor = extractor
        self.metrics = parse_metrics(metrics)
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.isc_splits, self.prc_neighborhood = isc_splits, prc_neighborhood
        self.batch_size = batch_size
        self.cache = cache_dir(cache)
        self.progress = progress
        self.flags = dict(flags or {})
        self._data: Dataset | None = None
        self._real: dict[str, Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.extractor.module.parameters()).device

    def real_data(self) -> Dataset:
        if self._data is None:
            self._data = self.reference.load()
        return self._data

    def _flag(self, name: str) -> str:
        return self.flags.get(name, name)

    def problems(self, num_samples: int) -> dict[str, str]:
        """Metrics that cannot be computed from ``num_samples`` generated and the reference's real images.

        Returns:
            metric -> one line saying which count is too small (generated samples, ``num_real``, or
            the reference split itself) and what would work; empty when all can be computed.
        """
        flag = self._flag
        ref = self.reference
        n_real = len(self.real_data())
        by_num_real = 0 < ref.num_real == n_real  # else the split itself is the limit
        need = {"fid": 2, "kid": self.kid_subset_size, "pr": self.prc_neighborhood + 1, "dc": DC_NEIGHBORHOOD + 1}
        out = {}
        for m in self.metrics:
            if m == "is":  # IS only looks at generated samples
                if num_samples < self.isc_splits:
                    out[m] = (f"is needs at least {self.isc_splits} generated samples (one per split), "
                              f"got {flag('num_samples')}={num_samples}; raise {flag('num_samples')}")
                continue
            k = need[m]
            if min(num_samples, n_real) >= k:
                continue
            split_limited = n_real < k and not by_num_real  # no flag raises the split's size
            got, short = [], []
            if num_samples < k:
                got.append(f"{flag('num_samples')}={num_samples}")
                short.append(flag("num_samples"))
            if split_limited:
                got.append(f"{n_real} real images, all of the {ref.dataset} {ref.split} split")
            elif n_real < k:
                got.append(f"{flag('num_real')}={n_real} real images")
                short.append(flag("num_real"))
            fixes = [f"raise {' and '.join(short)} to >= {k}"] if short and not split_limited else []
            if m == "kid" and min(num_samples, n_real) >= 2:
                fixes.append(f"lower {flag('kid_subset_size')} to <= {min(num_samples, n_real)}")
            if split_limited:
                fixes.append(f"leave {m} out of {flag('metrics')}")
            why = f" ({flag('kid_subset_size')}={k})" if m == "kid" else ""
            out[m] = (f"{m} needs at least {k} generated and real samples{why}, got {' and '.join(got)}; "
                      f"{' or '.join(fixes)}")
        return out

    def check(self, num_samples: int) -> None:
        """Raise UsageError with the first problem of :meth:`problems` (scripts: exit code 2)."""
        if num_samples < 1:
            raise UsageError(f"--num_samples: must be >= 1, got {num_samples}")
        found = self.problems(num_samples)
        if found:
            raise UsageError(next(iter(found.values())))

    def features(self, batches: Iterable[Tensor]) -> dict[str, Tensor]:
        """Features of batches of images in [-1, 1] (or uint8): ``{layer: (N, D)}`` float32 on the CPU."""
        parts: dict[str, list[Tensor]] = {}
        for images in batches:
            pixels = images if images.dtype == torch.uint8 else to_uint8(images.float())
            for layer, f in self.extractor(pixels.to(self.device)).items():
                parts.setdefault(layer, []).append(f.cpu())
        return {layer: torch.cat(fs) for layer, fs in parts.items()}

    def real_stats_key(self) -> str:
        return real_stats_key(self.reference, len(self.real_data()), self.extractor.name, self.extractor.sha256)

    def real_features(self) -> tuple[dict[str, Tensor], bool]:
        """Features and FID statistics of the reference, from the cache when there; (stats, was_cached)."""
        if self._real is not None:
            return self._real, True
        path = self.cache / f"{self.real_stats_key()}.pt"
        if path.is_file():
            try:
                self._real = torch.load(path, map_location="cpu", weights_only=True)
                return self._real, True
            except Exception:  # noqa: BLE001 - a truncated or foreign file: recompute and overwrite
                pass
        from torch_fidelity.metric_fid import fid_features_to_statistics
        from tqdm.auto import tqdm

        loader = DataLoader(self.real_data(), batch_size=self.batch_size, shuffle=False)
        batches = (x for x, _ in tqdm(loader, desc="real features", leave=False,
                                        disable=None if self.progress else True))  # None: terminals only
        feats = self.features(batches)[self.extractor.spec.feature_layer]  # (N, D)
        stats = fid_features_to_statistics(feats)
        self._real = {"features": feats, "mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(self._real, tmp)
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
        return self._real, False

    def score(self, fake: dict[str, Tensor], skip: Iterable[str] = ()) -> dict[str, float]:
        """The metric values of generated features ``fake`` (from :meth:`features`).

        Args:
            fake: ``{layer: (N, D)}`` of the generated images.
            skip: metrics not to compute (e.g. those :meth:`problems` named).

        Returns:
            ``fid``, ``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``, ``precision``, ``recall``,
            ``density``, ``coverage`` (those of the chosen metrics).
        """
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
        from torch_fidelity.metric_isc import isc_features_to_metric
        from torch_fidelity.metric_kid import kid_features_to_metric
        from torch_fidelity.metric_prc import prc_features_to_metric

        todo = [m for m in self.metrics if m not in set(skip)]
        real, _ = self.real_features() if set(todo) - {"is"} else ({}, True)
        f_fake = fake[self.extractor.spec.feature_layer]  # (N, D)
        out: dict[str, float] = {}
        if "fid" in todo:
            mine = fid_features_to_statistics(f_fake)
            theirs = {"mu": real["mu"].numpy(), "sigma": real["sigma"].numpy()}
            out["fid"] = fid_statistics_to_metric(mine, theirs, False)["frechet_inception_distance"]
        if "kid" in todo:
            kid = kid_features_to_metric(f_fake, real["features"], kid_subsets=self.kid_subsets,
                                         kid_subset_size=self.kid_subset_size, rng_seed=FIDELITY_SEED, verbose=False)
            out["kid_mean"] = kid["kernel_inception_distance_mean"]
            out["kid_std"] = kid["kernel_inception_distance_std"]
        if "is" in todo:
            isc = isc_features_to_metric(fake[self.extractor.spec.logits_layer], self.isc_splits, True, FIDELITY_SEED)
            out["is_mean"], out["is_std"] = isc["inception_score_mean"], isc["inception_score_std"]
        if "pr" in todo:
            prc = prc_features_to_metric(f_fake, real["features"], prc_neighborhood=self.prc_neighborhood,
                                         save_cpu_ram=True, verbose=False)
            out["precision"], out["recall"] = prc["precision"], prc["recall"]
        if "dc" in todo:
            out.update(density_coverage(real["features"].to(f_fake.device), f_fake, DC_NEIGHBORHOOD))
        return {k: float(v) for k, v in out.items()}

    def evaluate(self, samples: Tensor | Callable[[Tensor], Tensor], num_samples: int | None = None, *,
                 z_dim: int = 0, seed: int = 0) -> Evaluation:
        """Score a tensor of samples, or ``num_samples`` samples of a generator, in one process.

        Args:
            samples: (N, C, H, W) images in [-1, 1] or uint8; or ``generate(z) -> images`` (e.g.
                ``GAN.generate``, eval mode), called on :func:`latents` (seed, 0..num_samples-1).
            num_samples: generated samples (generator only).
            z_dim: latent size (generator only).
            seed: latent seed (generator only).

        Raises:
            UsageError: too few samples for a chosen metric (see :meth:`problems`).
        """
        import time

        start = time.perf_counter()
        if isinstance(samples, Tensor):
            num_samples = len(samples)
            self.check(num_samples)
            batches: Iterable[Tensor] = samples.split(self.batch_size)
        else:
            if num_samples is None or z_dim < 1:
                raise UsageError("evaluating a generator needs num_samples and z_dim")
            self.check(num_samples)
            batches = generate_samples(samples, z_dim, 0, num_samples, seed, self.batch_size, self.device,
                                       self.progress)
        fake = self.features(batches)
        cached = self.real_features()[1] if set(self.metrics) - {"is"} else False
        values = self.score(fake)
        spec = self.extractor.spec
        return Evaluation(values, self.extractor.name, spec.short, self.extractor.sha256, num_samples, cached,
                          time.perf_counter() - start)
