#!/usr/bin/env python
"""Score a checkpoint's generator: FID, KID, IS and precision/recall, or mode coverage for 2-D points.

    python scripts/evaluate.py runs/<run>/checkpoints/last.ckpt               # digits: lenet-mnist, offline
    python scripts/evaluate.py runs/<run>                                     # the same: its last.ckpt
    python scripts/evaluate.py CKPT --json --num_samples 10000 --seed 1
    python scripts/evaluate.py CKPT --extractor inception --metric_weights weights-inception-2015-12-05-6726825d.pth

The checkpoint is read with ``weights_only=True``; its stored config rebuilds the networks.
Real features are cached per key (data set, split, image size, number of real images, extractor
and the sha256 of its weights) under --cache_dir, so a second evaluation only generates and
extracts the generated half. Names in the table (and under ``names`` in --json) are the ones
training logs: ``fid/lenet_5k``, or ``fid/lenet-<sha256[:8]>_5k`` with --metric_weights other than
the extractor's reference weights (see ``gan_lightning.metrics.keys.metric_key``). A checkpoint of a
``--g_ema`` run is scored on G's EMA by default, under names ending in ``_ema`` (``fid/lenet_5k_ema``);
``--g live`` scores its live G under the plain names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from gan_lightning.runs.cli import run_cli
from gan_lightning.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    from gan_lightning.metrics.extractors import EXTRACTORS

    p = _Parser(prog="evaluate.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("ckpt", help="a checkpoint written by scripts/train.py, or a run folder (its checkpoints/last.ckpt)")
    p.add_argument("--num_samples", type=int, default=0, help="generated samples (0: 5000 images, 2500 points)")
    p.add_argument("--extractor", default="auto",
                   help=f"feature extractor: auto (lenet-mnist for digits, else inception), {', '.join(EXTRACTORS)}")
    p.add_argument("--metric_weights", default="",
                   help="local weights file of the extractor (offline Inception, or a LeNet written by "
                        "scripts/train_feature_extractor.py); names then carry its hash unless it is the reference")
    p.add_argument("--metric_download", action="store_true",
                   help="download the Inception weights if they are not in the torch hub cache (needs internet)")
    p.add_argument("--metrics", default="fid,kid,is,pr,dc", help="comma-separated: fid, kid, is, pr, dc")
    p.add_argument("--split", default="", help="reference split: train or test (default test; folder: train)")
    p.add_argument("--num_real", type=int, default=0, help="real images in the reference (0: the whole split)")
    p.add_argument("--kid_subset_size", type=int, default=1000, help="samples per KID subset")
    p.add_argument("--data_root", default="", help="data folder (default: the checkpoint's --data_root)")
    p.add_argument("--batch_size", type=int, default=250, help="images per generator and extractor call")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated samples' latents")
    p.add_argument("--cache_dir", default="", help="cache of real features (default $GAN_LIGHTNING_CACHE "
                                                   "or ~/.cache/gan_lightning)")
    p.add_argument("--g", default=None, choices=["live", "ema"],
                   help="which G to score: ema (the EMA of its weights, the default when the checkpoint has one) "
                        "or live")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def checkpoint_of(path: str) -> Path:
    """The checkpoint to score: ``path``, or for a run folder its ``checkpoints/last.ckpt``.

    Raises:
        UsageError: a folder without checkpoints/last.ckpt (a missing or unreadable file is
            read_checkpoint's to report).
    """
    given = Path(path)
    if not given.is_dir():
        return given
    last = given / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    others = sorted(p.name for p in (given / "checkpoints").glob("*.ckpt"))
    if others:
        raise UsageError(f"{path} is a run folder without checkpoints/last.ckpt; pass one of its checkpoints: "
                         + ", ".join(str(given / "checkpoints" / name) for name in others))
    if (given / "config.yaml").is_file() or (given / "metrics.csv").is_file():
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


def load_generator(path: str | Path):
    """(GAN module in eval-ready state on the CPU, its TrainConfig) from a checkpoint of this project.

    Raises:
        UsageError: not a readable gan_lightning checkpoint, or weights that do not fit its config.
    """
    from gan_lightning.build import build_module
    from gan_lightning.runs.checkpoints import CHECKPOINT_KEY, load_weights, read_checkpoint
    from gan_lightning.config import config_from_dict
    from gan_lightning.data.datasets import DATASETS, data_shape

    ckpt = read_checkpoint(path)
    stored = ckpt[CHECKPOINT_KEY]["config"]
    if stored.get("dataset") not in DATASETS:
        raise UsageError(f"{path} holds no usable training config (no known 'dataset' in it)")
    cfg = config_from_dict(stored)
    module = build_module(cfg, data_shape(DATASETS[cfg.dataset], cfg.image_size))
    load_weights(module, ckpt["state_dict"], path)
    return module, cfg


def evaluate_points(module, dataset: str, args, device) -> dict[str, Any]:
    from gan_lightning.metrics.fidelity import generate_samples
    from gan_lightning.metrics.mode_coverage import MIXTURES, dataset_mode_coverage

    import torch

    if dataset not in MIXTURES:
        raise UsageError(f"mode coverage is defined for {', '.join(MIXTURES)} only, not {dataset!r}")
    generate = partial(module.generate, ema=args.g == "ema")
    points = torch.cat(list(generate_samples(generate, module.z_dim, 0, args.num_samples, args.seed,
                                             args.batch_size, device)))  # (N, 2)
    coverage = dataset_mode_coverage(points.cpu(), dataset)
    return {"modes_covered": int(coverage["modes_covered"]), "num_modes": int(coverage["num_modes"]),
            "high_quality": coverage["high_quality"], "min_per_mode": int(coverage["min_per_mode"])}


def evaluate_images(module, cfg, args, device) -> tuple[dict[str, Any], dict[str, str]]:
    from gan_lightning.metrics.extractors import data_warning, default_extractor, load_extractor
    from gan_lightning.metrics.fidelity import FidelityMetrics, Reference
    from gan_lightning.metrics.keys import default_split

    name = default_extractor(cfg.dataset) if args.extractor == "auto" else args.extractor
    reference = Reference(cfg.dataset, args.split or default_split(cfg.dataset), cfg.image_size, args.num_real,
                          args.data_root or cfg.data_root)
    extractor = load_extractor(name, args.metric_weights, args.metric_download, device)
    fm = FidelityMetrics(reference, extractor, args.metrics, kid_subset_size=args.kid_subset_size,
                         batch_size=args.batch_size, cache=args.cache_dir or None, progress=not args.json,
                         flags={k: f"--{k}" for k in ("num_samples", "num_real", "kid_subset_size", "metrics")})
    fm.check(args.num_samples)  # before the warning: an error is the only line
    caveat = data_warning(name, cfg.dataset)
    if caveat:
        print(f"warning: {caveat}", file=sys.stderr)
    result = fm.evaluate(partial(module.generate, ema=args.g == "ema"), args.num_samples, z_dim=module.z_dim,
                         seed=args.seed)
    report = {**result.values, "extractor": result.extractor, "extractor_sha256": result.extractor_sha256,
              "real_stats_cached": result.real_stats_cached, "dataset": reference.dataset, "split": reference.split,
              "num_real": len(fm.real_data())}
    return report, dict(zip(result.values, result.logged(ema=args.g == "ema")))  # raw name -> logged name


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from gan_lightning.metrics.keys import default_num_samples
    from gan_lightning.config import SEED_MAX, SIZE_LIMITS
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.metrics.extractors import check_name
    from gan_lightning.metrics.keys import metric_key, parse_metrics

    for flag in ("num_samples", "num_real"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag}: must be >= 0, got {getattr(args, flag)}")
    for flag in ("batch_size", "kid_subset_size"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag}: must be >= 1, got {getattr(args, flag)}")
    # train.py's limits on the same settings: larger values are typing mistakes that would run for days
    for flag, most in (("num_samples", SIZE_LIMITS["metric_num_samples"]), ("batch_size", SIZE_LIMITS["batch_size"]),
                       ("kid_subset_size", SIZE_LIMITS["metric_kid_subset_size"])):
        if getattr(args, flag) > most:
            raise UsageError(f"--{flag}: must be <= {most:,}, got {getattr(args, flag)}")
    if not 0 <= args.seed <= SEED_MAX:
        raise UsageError(f"--seed: must be in [0, {SEED_MAX}], got {args.seed}")
    if args.extractor != "auto":
        check_name(args.extractor)
    parse_metrics(args.metrics)
    args.ckpt = str(checkpoint_of(args.ckpt))
    device = resolve_device(args.device)
    start = time.perf_counter()
    module, cfg = load_generator(args.ckpt)
    module.to(device)
    if args.g == "ema" and module.g_ema is None:
        raise UsageError(f"{args.ckpt} keeps no EMA of G (trained without --g_ema); use --g live")
    args.g = args.g or ("ema" if module.g_ema is not None else "live")
    kind = DATASETS[cfg.dataset].kind
    args.num_samples = args.num_samples or default_num_samples(kind)
    if kind == "points":
        if args.extractor != "auto" or args.metric_weights:
            raise UsageError(f"{cfg.dataset} is 2-D points: it gets mode coverage, not --extractor metrics")
        report = evaluate_points(module, cfg.dataset, args, device)
        names = {k: metric_key(k, args.num_samples, ema=args.g == "ema") for k in ("modes_covered", "high_quality")}
        report["dataset"] = cfg.dataset
    else:
        report, names = evaluate_images(module, cfg, args, device)
    report.update(generator=args.g, num_samples=args.num_samples, seed=args.seed, seconds=round(time.perf_counter() - start, 3))
    if args.json:
        print(json.dumps({**report, "names": names}))
        return 0
    print(f"checkpoint  {args.ckpt}")
    width = max(24, *(len(names.get(key, key)) + 2 for key in report))  # marked names are longer
    for key, value in report.items():
        label = names.get(key, key)
        print(f"{label:<{width}}{value:.6g}" if isinstance(value, float) else f"{label:<{width}}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
