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

import sys
from typing import Sequence

from gan_lightning.runs.cli import Parser, run_cli


def _parser() -> Parser:
    from gan_lightning.metrics.extractors import EXTRACTORS

    p = Parser(prog="evaluate.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
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


def main(argv: Sequence[str] | None = None) -> int:
    from gan_lightning.experiments.evaluate import evaluate_checkpoint

    flags = vars(_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))
    as_json = flags.pop("json")
    report = evaluate_checkpoint(**flags, progress=not as_json)
    print(report.text(as_json))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
