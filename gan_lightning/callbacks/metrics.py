"""MetricsCallback: FID/KID/IS/precision-recall of G's samples (images) or mode coverage (2-D points)."""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable, Mapping

import lightning as L
import torch
from torch import Tensor
from typing_extensions import override

from gan_lightning.callbacks.messages import rank_zero_say, rank_zero_warning
from gan_lightning.errors import UsageError
from gan_lightning.metrics.fidelity import FidelityMetrics, Reference, shard
from gan_lightning.metrics.keys import HEADLINE, METRICS, MetricSettings, best_of, metric_settings, parse_metrics
from gan_lightning.metrics.scoring import Scorer
from gan_lightning.torch_utils import broadcast_coalesced


def gather_rows(trainer: L.Trainer, rows: Tensor, counts: list[int]) -> Tensor:
    """Concatenate every rank's ``rows`` (counts[r], ...) in rank order; each row appears once.

    ``all_gather`` needs equal shapes, so rows are padded to the largest count and trimmed after.
    """
    if trainer.world_size == 1:
        return rows
    padded = rows.new_zeros(max(counts), *rows.shape[1:])
    padded[: len(rows)] = rows
    gathered = trainer.strategy.all_gather(padded)  # (world, max(counts), ...)
    return torch.cat([gathered[r, : counts[r]] for r in range(trainer.world_size)])


def sync_buffers(trainer: L.Trainer, module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before sampling.

    DDP keeps parameters equal, but each rank's BatchNorm running statistics follow its own
    batches after the last broadcast; in eval mode G uses them, so without this each rank would
    sample from a slightly different generator.
    """
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        broadcast_coalesced(list(module.buffers()))


class MetricsCallback(L.Callback):
    """Score G's samples every ``every_n_epochs`` epochs and after the last one.

    Images get FID, KID (mean, std), Inception score (mean, std) and precision/recall against a
    reference split, in the feature space of ``extractor`` (see :mod:`gan_lightning.metrics.fidelity`;
    real features are cached on disk per key). 2-D points (``ring``, ``grid``) get mode coverage
    (:mod:`gan_lightning.metrics.mode_coverage`). Values are logged with ``pl_module.log`` under names
    that say how they were measured (``fid/lenet_5k``, ``modes_covered/2.5k``; with weights other
    than the extractor's reference ones, ``fid/lenet-<sha256[:8]>_5k``), so every logger gets
    them; W&B run summaries keep their best and last value (trainer/loggers.py) so a sweep can optimize them.

    The sample latents are fixed (``seed``): every evaluation scores G on the same z, so the
    curve over epochs is not noisy from resampling, and training's own RNG is left untouched.
    Under DDP each rank generates its share (``num_samples // world``, one more on the first
    ``num_samples % world`` ranks) and extracts its features; features are gathered to rank 0
    (about ``num_samples * D * 4`` bytes, 410 MB for 50k Inception features), which computes the
    metrics once and broadcasts them so every rank logs the same values. G's buffers (BatchNorm
    running statistics, which DDP lets drift per rank) are first broadcast from rank 0, so every
    rank samples from the same generator. Precision/recall and KID
    need all features in one place anyway; torch-fidelity's maths on the gathered features
    gives the same numbers as one process, sample for sample.

    Reads ``pl_module.generate(z)`` (eval mode, the mode G was in restored), ``pl_module.z_dim``
    and, for arguments left as None, ``pl_module.config`` (``dataset``, ``image_size``, ``data_root``).
    A module with an EMA of G's weights (``pl_module.g_ema`` not None, see
    :class:`~gan_lightning.modules.base.GeneratorSystem`) is scored on that EMA, under names ending in
    ``_ema`` (``fid/lenet_5k_ema``), through ``generate(z, ema=True)`` and ``sampling_generator(ema)``;
    with ``live_g`` its live G too (``generate(z, ema=False)``), under the plain names.

    The headline values (FID of images; modes covered and high-quality fraction of points; of the
    generator samples come from) go to the progress bar with their best so far, and, where no bar is
    shown (a log file), to one console line per evaluation; :meth:`summary` is the run's closing line.

    A problem a user can cause at run time (missing weights, no network for Inception, too few
    samples for KID's subsets, unreadable reference data) prints one warning line; that metric (or
    all, when nothing can be measured) is skipped and training goes on.

    Args:
        every_n_epochs: epochs between evaluations (>= 1); the last epoch is always evaluated.
            To measure only at the end, pass the number of epochs; to measure nothing, add no
            callback (the ``metric_every_n_epochs=0`` of the training config).
        num_samples: generated samples per evaluation over all processes; 0 for 5,000 images or
            2,500 points.
        extractor: ``auto`` (lenet-mnist for digit data, inception for other images) or a name
            of ``gan_lightning.metrics.extractors.EXTRACTORS``.
        metrics: subset of ``fid``, ``kid``, ``is``, ``pr`` (images only).
        weights_path: local weights file of the extractor ("" for shipped / torch hub cache).
        download: allow downloading Inception weights that are not cached.
        dataset: reference data set; None reads ``pl_module.config["dataset"]``.
        image_size: None reads ``pl_module.config["image_size"]``.
        data_root: None reads ``pl_module.config["data_root"]``.
        split: reference split; None for ``test`` (``train`` for ``folder``).
        num_real: real images in the reference (0: the whole split).
        kid_subset_size: samples per KID subset (1,000 by convention).
        batch_size: images per generator and extractor call.
        cache_dir: folder of cached real features (None: $GAN_LIGHTNING_CACHE or ~/.cache/gan_lightning).
        seed: seed of the evaluation latents.
        progress: show a tqdm bar on rank zero while generating.
        flags: how warnings spell the settings a user can change, e.g. ``{"num_samples":
            "--metric_num_samples"}`` (see :class:`~gan_lightning.metrics.fidelity.FidelityMetrics`); default
            the argument names.
        live_g: with an EMA of G, also score the live G (plain names); no effect without one.

    Raises:
        UsageError: a negative count, an unknown metric or extractor name.

    Example:
        >>> cb = MetricsCallback(every_n_epochs=5, num_samples=5000)  # logs fid/lenet_5k on mnist5k
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 0, *, extractor: str = "auto",
                 metrics: str | Iterable[str] = METRICS, weights_path: str = "", download: bool = False,
                 dataset: str | None = None, image_size: int | None = None, data_root: str | None = None,
                 split: str | None = None, num_real: int = 0, kid_subset_size: int = 1000, batch_size: int = 250,
                 cache_dir: str | None = None, seed: int = 0, progress: bool = True,
                 flags: Mapping[str, str] | None = None, live_g: bool = False) -> None:
        from gan_lightning.metrics.extractors import check_name

        for name, value in (("num_samples", num_samples), ("num_real", num_real)):
            if value < 0:
                raise UsageError(f"{name} must be >= 0, got {value}")
        for name, value in (("every_n_epochs", every_n_epochs), ("batch_size", batch_size),
                            ("kid_subset_size", kid_subset_size)):
            if value < 1:
                raise UsageError(f"{name} must be >= 1, got {value}")
        if extractor not in ("auto", "none"):  # none: 2-D points, which need no extractor
            check_name(extractor)
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.extractor, self.metrics = extractor, parse_metrics(metrics)
        self.weights_path, self.download = weights_path, download
        self.dataset, self.image_size, self.data_root, self.split = dataset, image_size, data_root, split
        self.num_real, self.kid_subset_size, self.batch_size = num_real, kid_subset_size, batch_size
        self.cache_dir, self.seed, self.progress = cache_dir, seed, progress
        self.flags = dict(flags or {})
        self.live_g = live_g
        self.fidelity: FidelityMetrics | None = None
        self.points = False  # 2-D mixture: mode coverage instead
        self.off = ""  # why nothing is measured ("" while on)
        self.skip: set[str] = set()
        self.last_metrics: dict[str, float] = {}
        self.best: dict[str, tuple[float, int]] = {}  # headline key -> (best value, G step it was measured at)
        self._scored_at: int | None = None

    # -- set-up: everything that can go wrong is found here, once ----------------------------
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        from gan_lightning.data.datasets import DATASETS
        from gan_lightning.metrics.mode_coverage import MIXTURES

        config = getattr(pl_module, "config", {}) or {}
        dataset = self.dataset or config.get("dataset", "")
        if dataset not in DATASETS:
            self.off = f"metrics off: unknown dataset {dataset!r} (pass dataset=...)"
            rank_zero_warning(self.off)
            return
        settings = metric_settings(dataset, self.extractor, self.num_samples, self.split or "")
        self.num_samples = settings.num_samples
        if settings.kind == "points":
            self.points = dataset in MIXTURES
            self.off = "" if self.points else f"metrics off: mode coverage is defined for {', '.join(MIXTURES)} only"
            self.dataset = dataset
        else:
            if self.download and trainer.world_size > 1:  # one download per machine, not one per process
                if trainer.local_rank == 0:
                    self._try_download(settings.extractor)
                trainer.strategy.barrier()
            self._setup_fidelity(settings, dataset, config)
        if self.off:
            rank_zero_warning(self.off)

    def _try_download(self, name: str) -> None:
        from gan_lightning.metrics.extractors import resolve_weights

        try:
            resolve_weights(name, self.weights_path, download=True)
        except UsageError:
            pass  # every rank then reports it in _setup_fidelity

    def _setup_fidelity(self, settings: MetricSettings, dataset: str, config: dict[str, Any]) -> None:
        from gan_lightning.metrics.extractors import data_warning, load_extractor

        caveat = data_warning(settings.extractor, dataset)
        if caveat:
            rank_zero_warning(caveat)
        reference = Reference(dataset, settings.split, int(self.image_size or config.get("image_size", 32)),
                              self.num_real, str(self.data_root or config.get("data_root", "data")))
        try:
            extractor = load_extractor(settings.extractor, self.weights_path, self.download)
            self.fidelity = FidelityMetrics(reference, extractor, self.metrics, kid_subset_size=self.kid_subset_size,
                                            batch_size=self.batch_size, cache=self.cache_dir, flags=self.flags)
            problems = self.fidelity.problems(self.num_samples)
        except UsageError as e:
            self.off = f"metrics off: {e}; training goes on without them"
            return
        for metric, why in problems.items():
            rank_zero_warning(f"{metric} skipped: {why}")
        self.skip = set(problems)
        if not set(self.metrics) - self.skip:
            self.off = "metrics off: none of the chosen metrics can be computed"

    # -- when --------------------------------------------------------------------------------
    def _due(self, trainer: L.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = ((trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch)
                or (trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps) or trainer.should_stop)
        every = epoch % self.every_n_epochs == 0
        return (last or every) and self._scored_at != trainer.global_step

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.off and self._due(trainer):
            self.evaluate(trainer, pl_module)

    # -- what --------------------------------------------------------------------------------
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Score each generator due (:meth:`generators`), log everywhere. Returns the logged values."""
        logged: dict[str, float] = {}
        for ema in self.generators(pl_module):
            values = self._evaluate_one(trainer, pl_module, ema)
            if values is None:
                return {}
            logged.update(values)
        headline = self._track_best(logged, pl_module, trainer)
        for key, value in logged.items():
            pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=trainer.world_size > 1,
                          prog_bar=key in headline)
        for key in headline:  # the bar only: the logged best is the W&B summary's (trainer/loggers.py)
            pl_module.log(f"{key} best", self.best[key][0], on_step=False, on_epoch=True, prog_bar=True,
                          logger=False)
        self.last_metrics, self._scored_at = logged, trainer.global_step
        if headline and getattr(trainer, "progress_bar_callback", True) is None:  # no bar (a log file): a line
            rank_zero_say(f"epoch {trainer.current_epoch + 1}: {self.summary()}")
        return logged

    def _track_best(self, logged: Mapping[str, float], pl_module: L.LightningModule,
                    trainer: L.Trainer) -> list[str]:
        """Update :attr:`best` with this evaluation's headline values; returns their keys."""
        g_step = int(getattr(pl_module, "g_step_count", trainer.global_step))
        ema = getattr(pl_module, "g_ema", None) is not None  # samples and metrics come from the EMA of G then
        names = HEADLINE["points" if self.points else "images"]
        headline = [k for k in logged if k.split("/")[0] in names and k.endswith("_ema") == ema]
        for key in headline:
            value, better = logged[key], best_of(key)
            old = self.best.get(key)
            if old is None or (value < old[0] if better == "min" else value > old[0]):
                self.best[key] = (value, g_step)
        return headline

    @property
    @override
    def state_key(self) -> str:
        # several MetricsCallbacks in one Trainer (other data, sample counts or metrics) keep their own state
        return self._generate_state_key(every_n_epochs=self.every_n_epochs, num_samples=self.num_samples,
                                        extractor=self.extractor, metrics=self.metrics, dataset=self.dataset,
                                        image_size=self.image_size, split=self.split, num_real=self.num_real,
                                        kid_subset_size=self.kid_subset_size, weights_path=self.weights_path,
                                        live_g=self.live_g)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The best headline values and the last evaluation, saved in checkpoints: a resumed run's progress
        bar and closing line report the best of the whole run, not of its last session."""
        return {"best": {k: list(v) for k, v in self.best.items()}, "last_metrics": dict(self.last_metrics)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = {k: (float(v), int(at)) for k, (v, at) in state_dict.get("best", {}).items()}
        self.last_metrics = dict(state_dict.get("last_metrics", {}))

    def summary(self) -> str:
        """The headline values of the last evaluation with their best, e.g. ``fid/lenet_5k 9.73 (best 9.73
        at G step 1240)``; "" before the first evaluation."""
        parts = []
        for key, (best, at) in self.best.items():
            last = self.last_metrics.get(key)
            if last is not None:
                parts.append(f"{key} {last:.4g} (best {best:.4g} at G step {at})")
        return ", ".join(parts)

    def generators(self, pl_module: L.LightningModule) -> list[bool | None]:
        """Which of the module's generators are scored: [None] (its ``generate``) without an EMA of G, else
        [True] (the EMA) and, with ``live_g``, False (the live G)."""
        if getattr(pl_module, "g_ema", None) is None:
            return [None]
        return [True, False] if self.live_g else [True]

    def _evaluate_one(self, trainer: L.Trainer, pl_module: L.LightningModule,
                      ema: bool | None) -> dict[str, float] | None:
        """Generate this rank's share, gather on rank 0, score there; None when metrics turned off."""
        world, rank = trainer.world_size, trainer.global_rank
        counts = [b - a for a, b in (shard(self.num_samples, world, r) for r in range(world))]
        start, end = shard(self.num_samples, world, rank)
        if ema is None:
            generate, generator = pl_module.generate, getattr(pl_module, "generator", pl_module)
        else:
            generate, generator = partial(pl_module.generate, ema=ema), pl_module.sampling_generator(ema)
        sync_buffers(trainer, generator)
        scorer = Scorer(self.dataset, self.num_samples, None if self.points else self.fidelity, frozenset(self.skip))
        local = scorer.rows(generate, pl_module.z_dim, start, end, self.seed, self.batch_size, pl_module.device,
                            self.progress and trainer.is_global_zero, desc="metrics")  # {name: (count, D)}
        # The same layers in the same order on every rank, so the collectives pair up.
        rows = {k: gather_rows(trainer, v.to(pl_module.device), counts).cpu() for k, v in local.items()}
        values: dict[str, float] | str = {}
        if trainer.is_global_zero:
            try:
                values = scorer.score(rows, ema=bool(ema))
            except UsageError as e:  # e.g. reference data gone since set-up
                values = f"metrics off: {e}"
        values = trainer.strategy.broadcast(values, src=0)
        if isinstance(values, str):
            self.off = values
            rank_zero_warning(values)
            return None
        return values
