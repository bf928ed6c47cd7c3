"""The names and defaults of every metric a run logs: one owner for the metrics callback, the sweep
validation, the run comparison and the paper reproductions.

- :func:`metric_key` builds one logged name: the metric, the extractor (marked when its weights
  are not the reference ones) and the number of generated samples (``fid/lenet_5k``,
  ``kid_mean/inception_50k``, ``fid/lenet-1a2b3c4d_5k``, ``modes_covered/2.5k``), ending in ``_ema``
  when the samples came from the EMA of G's weights (``fid/lenet_5k_ema``, ``--g_ema``).
- :func:`metric_keys` is the set of names a MetricsCallback with given settings logs.
- the defaults: generated samples per evaluation, the reference split, and :func:`metric_settings`,
  the one place a metric's ``auto`` settings get their value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

from gan_lightning.errors import UsageError

METRICS = ("fid", "kid", "is", "pr", "dc")  # what a user can ask for
VALUE_NAMES = {"fid": ("fid",), "kid": ("kid_mean", "kid_std"), "is": ("is_mean", "is_std"),
               "pr": ("precision", "recall"), "dc": ("density", "coverage")}  # the values each metric gives
PRIMARY = "fid"  # the metric runs are compared on by default (scripts/compare_runs.py)
HEADLINE = {"images": ("fid",), "points": ("modes_covered", "high_quality")}  # what the console shows of a run
# Which way each logged value improves: a run's summary keeps its best and its last value.
BEST = {"fid": "min", "kid_mean": "min", "ssl/test_error": "min", "ssl/test_error_live": "min",
        "is_mean": "max", "precision": "max", "recall": "max", "density": "max", "coverage": "max",
        "modes_covered": "max", "high_quality": "max"}


# -- names ------------------------------------------------------------------------------------
def count_label(n: int) -> str:
    """A sample count as it appears in metric names: 500 -> "500", 2500 -> "2.5k", 50000 -> "50k"."""
    if n < 1000:
        return str(n)
    return f"{n / 1000:.3f}".rstrip("0").rstrip(".") + "k"


WEIGHTS_MARK = 8  # hex digits of a non-reference weights file's sha256 in metric names
EMA_MARK = "_ema"  # ends the names of values measured on the EMA of G's weights (--g_ema)


def metric_key(value: str, num_samples: int, extractor: str = "", weights_sha256: str = "", ema: bool = False) -> str:
    """The logged name of a metric: what it is, in which feature space, from how many samples.

    Names are ``<value>/<extractor>_<count>``: ``fid/lenet_5k``, ``kid_mean/inception_50k``. The
    plain extractor name means its reference weights (``ExtractorSpec.sha256``): the shipped
    ``lenet_mnist.pt`` for ``lenet``, torch-fidelity's official file for ``inception``. Features
    from any other weights file (a retrained LeNet, random Inception weights for offline tests)
    give numbers that are not comparable with those, so the name carries the first 8 hex digits
    of that file's sha256: ``<value>/<extractor>-<sha256[:8]>_<count>``, e.g. ``fid/lenet-1a2b3c4d_5k``.
    2-D point metrics have no extractor: ``modes_covered/2.5k``. Samples of the EMA of G's weights
    (``--g_ema``) add ``_ema`` at the end: ``fid/lenet_5k_ema``, ``modes_covered/2.5k_ema``.

    Args:
        value: ``fid``, ``kid_mean``, ``modes_covered``, ...
        num_samples: generated samples it was measured on.
        extractor: the extractor's short name (``lenet``, ``inception``); "" for 2-D point metrics.
        weights_sha256: sha256 of the extractor's weights file; "" for its reference weights (to
            name what a run with the default weights will log). Code that logs measured values
            passes the hash of the file it used.
        ema: the samples came from the EMA of G's weights, not the live G.

    Example:
        >>> metric_key("fid", 5000, "lenet"), metric_key("modes_covered", 2500)
        ('fid/lenet_5k', 'modes_covered/2.5k')
        >>> metric_key("fid", 5000, "lenet", "1a2b3c4d" + "0" * 56)
        'fid/lenet-1a2b3c4d_5k'
        >>> metric_key("fid", 5000, "lenet", ema=True)
        'fid/lenet_5k_ema'
    """
    mark = EMA_MARK if ema else ""
    if not extractor:
        return f"{value}/{count_label(num_samples)}{mark}"
    from gan_lightning.metrics.extractors import EXTRACTORS

    reference = next((spec.sha256 for spec in EXTRACTORS.values() if spec.short == extractor), "")
    weights = weights_sha256.lower()
    space = extractor if weights in ("", reference) else f"{extractor}-{weights[:WEIGHTS_MARK]}"
    return f"{value}/{space}_{count_label(num_samples)}{mark}"


def best_of(key: str) -> str | None:
    """"min" or "max": which way the logged value ``key`` improves; None for values without a best.

    Example:
        >>> best_of("fid/lenet_5k_ema"), best_of("recall/inception_50k"), best_of("ssl/test_error"), best_of("loss/d")
        ('min', 'max', 'min', None)
    """
    return BEST.get(key, BEST.get(key.split("/")[0]) if key.count("/") == 1 else None)


def parse_metrics(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"fid,kid"`` (or a sequence) -> ("fid", "kid"); ``"none"`` or "" -> (). Raises UsageError on unknown names."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if names in (["none"], []):
        return ()
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise UsageError(f"unknown metric {bad[0]!r}; valid metrics are: {', '.join(METRICS)} (or none)")
    return tuple(dict.fromkeys(names))


def default_split(dataset: str) -> str:
    """``test`` (held out), except for ``folder``, which is one set of images with no test split."""
    return "train" if dataset == "folder" else "test"


DEFAULT_NUM_SAMPLES = {"images": 5000, "points": 2500}  # points: PacGAN's 2,500


def default_num_samples(kind: str) -> int:
    """Generated samples per evaluation when none are given: 5,000 images, or 2,500 points (PacGAN)."""
    return DEFAULT_NUM_SAMPLES[kind]


class MetricSettings(NamedTuple):
    """What an evaluation of a data set measures, every ``auto`` worked out (:func:`metric_settings`)."""

    kind: str  # "images" or "points" (mode coverage)
    extractor: str | None  # None: points, which need no extractor
    num_samples: int
    split: str


def metric_settings(dataset: str, extractor: str = "auto", num_samples: int = 0, split: str = "") -> MetricSettings:
    """The metric settings of ``dataset`` with each ``auto`` resolved: the extractor (lenet-mnist for
    digits, inception for other images, None for points), the number of generated samples (0: 5,000
    images or 2,500 points) and the reference split ("": test, train for ``folder``).

    Raises:
        KeyError: ``dataset`` is not a key of ``DATASETS``.
    """
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.metrics.extractors import default_extractor

    kind = DATASETS[dataset].kind
    return MetricSettings(kind, default_extractor(dataset, kind) if extractor == "auto" else extractor,
                          num_samples or default_num_samples(kind), split or default_split(dataset))


def metric_keys(dataset: str, num_samples: int = 0, extractor: str = "auto", metrics: str | Iterable[str] = METRICS,
                kid_subset_size: int = 1000, weights_path: str = "", ema: bool = False) -> set[str]:
    """The keys MetricsCallback logs for these arguments (the one owner of metric names) (a sweep's metric must be one of them).

    KID is left out when ``num_samples`` is below ``kid_subset_size`` (it is skipped then); a
    reference split smaller than the subset size is only found when the data is loaded. With a
    ``weights_path`` the keys carry that file's hash unless it is the reference weights
    (:func:`~gan_lightning.metrics.keys.metric_key`); a missing file logs nothing (metrics are off).
    ``ema``: the names of the scores of G's EMA (``_ema`` at the end).
    """
    from gan_lightning.metrics.extractors import check_name, file_sha256
    from gan_lightning.metrics.mode_coverage import LOGGED, MIXTURES

    kind, name, n, _ = metric_settings(dataset, extractor, num_samples)
    if kind == "points":
        return {metric_key(k, n, ema=ema) for k in LOGGED} if dataset in MIXTURES else set()
    short = check_name(name).short
    if weights_path and not Path(weights_path).expanduser().is_file():
        return set()
    sha256 = file_sha256(Path(weights_path).expanduser()) if weights_path else ""
    chosen = [m for m in parse_metrics(metrics) if m != "kid" or n >= kid_subset_size]
    return {metric_key(v, n, short, sha256, ema) for m in chosen for v in VALUE_NAMES[m]}


def run_metric_keys(cfg) -> set[str]:
    """The metric keys a training run of ``cfg`` (a TrainConfig, resolved or not) logs; empty when metrics are off.

    Reads ``metric_every_n_epochs`` (0: off), ``dataset``, ``metrics``, ``metric_num_samples``,
    ``metric_extractor``, ``metric_kid_subset_size``, ``metric_weights``, ``g_ema`` (> 0: the EMA's
    keys, ``fid/lenet_5k_ema``) and ``metric_live_g`` (with ``g_ema``: the live G's plain keys too).
    """
    if cfg.metric_every_n_epochs <= 0:
        return set()
    extractor = "auto" if cfg.metric_extractor == "none" else cfg.metric_extractor
    ema = cfg.g_ema > 0
    scored = [ema, *([False] if ema and cfg.metric_live_g else [])]  # which G: its EMA, the live one
    return {key for e in scored for key in metric_keys(cfg.dataset, cfg.metric_num_samples, extractor, cfg.metrics,
                                                      cfg.metric_kid_subset_size, weights_path=cfg.metric_weights,
                                                      ema=e)}
