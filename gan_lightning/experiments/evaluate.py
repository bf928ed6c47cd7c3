"""``scripts/evaluate.py``: a checkpoint's generator scored as training scores it (the metrics' Scorer)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from gan_lightning.errors import UsageError
from gan_lightning.runs.folder import CONFIG, METRICS, last_checkpoint, load


def checkpoint_of(path: str) -> Path:
    """The checkpoint to score: ``path``, or for a run folder its ``checkpoints/last.ckpt``.

    Raises:
        UsageError: a folder without checkpoints/last.ckpt (a missing or unreadable file is
            read_checkpoint's to report).
    """
    given = Path(path)
    if not given.is_dir():
        return given
    last = last_checkpoint(given)
    if last.is_file():
        return last
    others = sorted(p.name for p in (given / "checkpoints").glob("*.ckpt"))
    if others:
        raise UsageError(f"{path} is a run folder without checkpoints/last.ckpt; pass one of its checkpoints: "
                         + ", ".join(str(given / "checkpoints" / name) for name in others))
    if (given / CONFIG).is_file() or (given / METRICS).is_file():
        raise UsageError(f"{path} is a run folder without checkpoints (it stopped before its first one); pass a "
                         ".ckpt file that scripts/train.py wrote")
    raise UsageError(f"{path} is a folder, not a checkpoint; pass a .ckpt file, or a run folder that holds "
                     "checkpoints/last.ckpt")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def check_flags(num_samples: int, num_real: int, batch_size: int, kid_subset_size: int, seed: int, extractor: str,
                metrics: str) -> None:
    """Refuse a negative count, a size over train.py's limit, a bad seed, extractor or metric (UsageError)."""
    from gan_lightning.config import SEED_MAX, SIZE_LIMITS
    from gan_lightning.metrics.extractors import check_name
    from gan_lightning.metrics.keys import parse_metrics

    for flag, value, least in (("num_samples", num_samples, 0), ("num_real", num_real, 0),
                               ("batch_size", batch_size, 1), ("kid_subset_size", kid_subset_size, 1)):
        if value < least:
            raise UsageError(f"--{flag}: must be >= {least}, got {value}")
    # train.py's limits on the same settings: larger values are typing mistakes that would run for days
    for flag, value, most in (("num_samples", num_samples, SIZE_LIMITS["metric_num_samples"]),
                              ("batch_size", batch_size, SIZE_LIMITS["batch_size"]),
                              ("kid_subset_size", kid_subset_size, SIZE_LIMITS["metric_kid_subset_size"])):
        if value > most:
            raise UsageError(f"--{flag}: must be <= {most:,}, got {value}")
    if not 0 <= seed <= SEED_MAX:
        raise UsageError(f"--seed: must be in [0, {SEED_MAX}], got {seed}")
    if extractor != "auto":
        check_name(extractor)
    parse_metrics(metrics)


@dataclass
class Report:
    """What scripts/evaluate.py prints: the values and settings under their raw names, the logged names."""

    checkpoint: Path
    values: dict[str, Any]
    names: dict[str, str]  # raw name -> logged name (fid -> fid/lenet_5k)

    def text(self, as_json: bool = False) -> str:
        """One JSON object, or a table of the values under the checkpoint's path."""
        if as_json:
            return json.dumps({**self.values, "names": self.names})
        width = max(24, *(len(self.names.get(key, key)) + 2 for key in self.values))  # marked names are longer
        lines = [f"checkpoint  {self.checkpoint}"]
        for key, value in self.values.items():
            label = self.names.get(key, key)
            lines.append(f"{label:<{width}}{value:.6g}" if isinstance(value, float) else f"{label:<{width}}{value}")
        return "\n".join(lines)


def evaluate_checkpoint(ckpt: str, *, num_samples: int, extractor: str, metric_weights: str, metric_download: bool,
                        metrics: str, split: str, num_real: int, kid_subset_size: int, data_root: str,
                        batch_size: int, device: str, seed: int, cache_dir: str, g: str | None,
                        progress: bool = True) -> Report:
    """Score the generator of checkpoint (or run folder) ``ckpt``; the arguments are scripts/evaluate.py's flags
    (``progress``: tqdm bars for the images' features, where stderr is a terminal).

    Raises:
        UsageError: a bad flag, file or device, too few samples for a chosen metric.
    """
    from gan_lightning.metrics.extractors import data_warning, load_extractor
    from gan_lightning.metrics.fidelity import FidelityMetrics, Reference
    from gan_lightning.metrics.keys import metric_settings
    from gan_lightning.metrics.mode_coverage import LOGGED, MIXTURES
    from gan_lightning.metrics.scoring import Scorer

    check_flags(num_samples, num_real, batch_size, kid_subset_size, seed, extractor, metrics)
    path = checkpoint_of(ckpt)
    on = resolve_device(device)
    start = time.perf_counter()
    loaded = load(path)
    module, cfg = loaded.module, loaded.cfg
    module.to(on)
    if g == "ema" and module.g_ema is None:
        raise UsageError(f"{path} keeps no EMA of G (trained without --g_ema); use --g live")
    g = g or ("ema" if module.g_ema is not None else "live")
    generate, ema = partial(module.generate, ema=g == "ema"), g == "ema"
    kind, name, num_samples, split = metric_settings(cfg.dataset, extractor, num_samples, split)
    if kind == "points":
        if extractor != "auto" or metric_weights:
            raise UsageError(f"{cfg.dataset} is 2-D points: it gets mode coverage, not --extractor metrics")
        if cfg.dataset not in MIXTURES:
            raise UsageError(f"mode coverage is defined for {', '.join(MIXTURES)} only, not {cfg.dataset!r}")
        scorer = Scorer(cfg.dataset, num_samples)
        coverage = scorer.values(scorer.rows(generate, module.z_dim, 0, num_samples, seed, batch_size, on))
        report = {"modes_covered": int(coverage["modes_covered"]), "num_modes": int(coverage["num_modes"]),
                  "high_quality": coverage["high_quality"], "min_per_mode": int(coverage["min_per_mode"]),
                  "dataset": cfg.dataset}
        names = {k: scorer.key(k, ema) for k in LOGGED}
    else:
        reference = Reference(cfg.dataset, split, cfg.image_size, num_real, data_root or cfg.data_root)
        fm = FidelityMetrics(reference, load_extractor(name, metric_weights, metric_download, on), metrics,
                             kid_subset_size=kid_subset_size, batch_size=batch_size, cache=cache_dir or None,
                             progress=progress,
                             flags={k: f"--{k}" for k in ("num_samples", "num_real", "kid_subset_size", "metrics")})
        fm.check(num_samples)  # before the warning: an error is the only line
        caveat = data_warning(name, cfg.dataset)
        if caveat:
            print(f"warning: {caveat}", file=sys.stderr)
        scorer = Scorer(cfg.dataset, num_samples, fm)
        rows = scorer.rows(generate, module.z_dim, 0, num_samples, seed, batch_size, on, progress)
        cached = fm.real_features()[1] if set(fm.metrics) - {"is"} else False
        values = scorer.values(rows)
        report = {**values, "extractor": fm.extractor.name, "extractor_sha256": fm.extractor.sha256,
                  "real_stats_cached": cached, "dataset": reference.dataset, "split": reference.split,
                  "num_real": len(fm.real_data())}
        names = {k: scorer.key(k, ema) for k in values}
    report.update(generator=g, num_samples=num_samples, seed=seed, seconds=round(time.perf_counter() - start, 3))
    return Report(path, report, names)
