#!/usr/bin/env python
"""Benchmark the metrics: evaluations with real statistics uncached vs cached, and the parts' speeds.

    python bench/metrics.py                        # table
    python bench/metrics.py --json                 # one JSON object
    python bench/metrics.py --repeats 7 --num_samples 1000 --device cpu

What it measures (lenet-mnist, mnist5k test split = 1,000 real digits, 32 px):
- ``samples``: FID/KID/IS/PR of a fixed tensor of ``--num_samples`` generated images. Uncached
  starts from an empty cache folder, so the real digits' features are extracted and written;
  cached runs in a fresh FidelityMetrics (nothing kept in memory) with that folder filled, so
  only the generated half is extracted. With equal counts this is the ~2x of the cache.
- ``samples_fid_only``: the same with FID alone, whose scoring from features is cheap at 128-d,
  so extraction is nearly all the work. KID (100 subsets of 1,000) and precision/recall cost
  the same with or without the cache: ``score_s`` times each metric from features.
- ``generator``: the same, but the images come from the default run's generator (DCGAN, untrained:
  speed does not depend on training), as in MetricsCallback and scripts/evaluate.py. Generating
  is part of the generated half, so the cache saves less than half here.
- Each pair is interleaved (uncached, cached, uncached, ...) after one untimed warm-up pair;
  medians over ``--repeats`` of wall time and of this process's CPU time (steadier when other
  jobs share the machine).
- Throughput in images/s: the generator, lenet-mnist and inception (random local weights: the
  speed of the network, not the meaning of its numbers) on uint8 32x32 grey images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gan_lightning.config import TrainConfig, resolve  # noqa: E402
from gan_lightning.build import build_module  # noqa: E402
from gan_lightning.data.datasets import DATASETS, data_shape  # noqa: E402
from gan_lightning.metrics.extractors import load_extractor, write_random_inception_weights  # noqa: E402
from gan_lightning.metrics.fidelity import FidelityMetrics, Reference, latents  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_both(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads): CPU time is steadier on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def cache_pair(evaluate, folder: Path, repeats: int) -> dict[str, float]:
    """Interleaved uncached/cached timings of ``evaluate(cache_folder, expect_cached)``; medians and ratios."""
    times: dict[str, list[tuple[float, float]]] = {"uncached": [], "cached": []}
    for r in range(repeats + 1):  # run 0 warms up imports, data and kernels
        cache = folder / f"run{r}"
        uncached = timed_both(lambda: evaluate(cache, False))
        cached = timed_both(lambda: evaluate(cache, True))
        if r:
            times["uncached"].append(uncached)
            times["cached"].append(cached)
    out: dict[str, float] = {}
    for i, clock in enumerate(("wall", "cpu")):
        u = statistics.median(t[i] for t in times["uncached"])
        c = statistics.median(t[i] for t in times["cached"])
        out.update({f"uncached_{clock}_s": round(u, 4), f"cached_{clock}_s": round(c, 4),
                    f"speedup_{clock}": round(u / c, 3)})
    out["uncached_wall_all_s"] = [round(t[0], 3) for t in times["uncached"]]
    out["cached_wall_all_s"] = [round(t[0], 3) for t in times["cached"]]
    return out


def score_times(extractor, samples, cache: Path, batch_size: int, n: int) -> dict[str, float]:
    """Seconds each metric takes from features (real ones cached): the work no cache can save."""
    out = {}
    for metric in ("fid", "kid", "is", "pr"):
        fm = FidelityMetrics(Reference("mnist5k", "test", 32), extractor, (metric,), kid_subset_size=min(1000, n),
                             batch_size=batch_size, cache=cache)
        fake = fm.features(samples.split(batch_size))
        fm.real_features()
        out[metric] = round(statistics.median(timed(lambda: fm.score(fake)) for _ in range(3)), 4)
    return out


def rate(fn, n: int) -> float:
    fn()  # warm-up
    return n / timed(fn)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_samples", type=int, default=1000, help="generated samples (the reference has 1,000)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each, interleaved")
    p.add_argument("--batch_size", type=int, default=250)
    p.add_argument("--lenet_images", type=int, default=2000)
    p.add_argument("--inception_images", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    device = torch.device(args.device)
    n = args.num_samples

    torch.manual_seed(0)
    cfg = resolve(TrainConfig())  # the default run: DCGAN on mnist5k at 32 px
    gan = build_module(cfg, data_shape(DATASETS[cfg.dataset], cfg.image_size)).to(device)
    lenet = load_extractor("lenet-mnist", device=device)
    samples = torch.cat([gan.generate(z.to(device)) for z in latents(0, 0, n, gan.z_dim).split(args.batch_size)])

    def evaluate(source, cache: Path, expect_cached: bool, metrics=("fid", "kid", "is", "pr")) -> None:
        fm = FidelityMetrics(Reference("mnist5k", "test", 32), lenet, metrics, kid_subset_size=min(1000, n),
                             batch_size=args.batch_size, cache=cache)
        result = fm.evaluate(source, n, z_dim=gan.z_dim) if callable(source) else fm.evaluate(source)
        assert result.real_stats_cached == expect_cached

    pixels = torch.randint(0, 256, (max(args.lenet_images, args.inception_images), 1, 32, 32), dtype=torch.uint8,
                           device=device)
    with tempfile.TemporaryDirectory() as tmp:
        report = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "num_samples": n, "num_real": 1000, "repeats": args.repeats}
        report["samples"] = cache_pair(lambda c, e: evaluate(samples, c, e), Path(tmp) / "samples", args.repeats)
        report["samples_fid_only"] = cache_pair(lambda c, e: evaluate(samples, c, e, ("fid",)), Path(tmp) / "fid",
                                                args.repeats)
        report["score_s"] = score_times(lenet, samples, Path(tmp) / "samples" / "run0", args.batch_size, n)
        report["generator"] = cache_pair(lambda c, e: evaluate(gan.generate, c, e), Path(tmp) / "gen", args.repeats)
        z = latents(0, 0, args.lenet_images, gan.z_dim).to(device)
        report["generator_img_per_s"] = round(rate(lambda: [gan.generate(b) for b in z.split(args.batch_size)],
                                                   len(z)), 1)
        lenet_pixels = pixels[: args.lenet_images]
        report["lenet_img_per_s"] = round(rate(lambda: [lenet(b) for b in lenet_pixels.split(args.batch_size)],
                                               len(lenet_pixels)), 1)
        inception = load_extractor("inception", write_random_inception_weights(Path(tmp) / "inception.pt"),
                                   device=device)
        report["inception_img_per_s"] = round(rate(lambda: inception(pixels[: args.inception_images]),
                                                   args.inception_images), 2)
    report.update(lenet_images=args.lenet_images, inception_images=args.inception_images)

    if args.json:
        print(json.dumps(report))
        return 0
    print(f"device {report['device']}, torch {report['torch']}, {report['threads']} threads; {n} generated vs "
          f"1000 real digits, lenet-mnist; medians of {args.repeats}, interleaved")
    print(f"{'evaluation of':<20}{'clock':>6}{'uncached s':>12}{'cached s':>10}{'speed-up':>10}")
    for name in ("samples", "samples_fid_only", "generator"):
        r = report[name]
        for clock in ("wall", "cpu"):
            print(f"{name:<20}{clock:>6}{r[f'uncached_{clock}_s']:>12.3f}{r[f'cached_{clock}_s']:>10.3f}"
                  f"{r[f'speedup_{clock}']:>9.2f}x")
    print("scoring from features (s): " + ", ".join(f"{k} {v:.3f}" for k, v in report["score_s"].items()))
    print(f"{'throughput':<22}{'images/s':>12}")
    for name in ("generator", "lenet", "inception"):
        print(f"{name:<22}{report[f'{name}_img_per_s']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
