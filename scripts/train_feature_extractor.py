#!/usr/bin/env python
"""Train the ``lenet-mnist`` feature extractor on the built-in digits and write its weights file.

    python scripts/train_feature_extractor.py --out lenet_retrained.pt
    python scripts/evaluate.py CKPT --metric_weights lenet_retrained.pt   # logs fid/lenet-<sha256[:8]>_5k

Trains LeNetMNIST on the ``mnist5k`` train split (4,000 digits) with random affine augmentation
(rotation, scale, shift), on exactly the input the metrics give it: the images as uint8 (the one
``to_uint8`` conversion), then ``lenet_input``. The held-out test split (1,000 digits, 100 per
class) is used once, at the end: the script prints the test accuracy at 32 and 28 pixels, the
sha256 of the written file and the time taken. Deterministic for a given seed and torch build.
After training, ``feature_rms`` is set to the root mean square of the penultimate features over
the train digits (see ``LeNetMNIST.embed``).

``--out`` is required, and checked before training: the shipped ``gan_lightning/weights/lenet_mnist.pt``
is never written (by any spelling: relative, through symlinks), since metric names say ``lenet``
only for features of that exact file; an existing file is only replaced with ``--overwrite`` (and
then atomically). Metrics measured with the new file are named ``fid/lenet-<sha256[:8]>_5k``. To
ship new weights, copy the file by hand and update ``LENET_MNIST_SHA256`` and the README.
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

from gan_lightning.errors import UsageError
from gan_lightning.experiments.lenet_training import check_out, report, save, train
from gan_lightning.runs.cli import Parser, run_cli


def _parser() -> Parser:
    p = Parser(prog="train_feature_extractor.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--out", default="", help="weights file to write (required; never the shipped lenet_mnist.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--epochs", type=int, default=15, help="passes over the 4,000 training digits")
    p.add_argument("--batch_size", type=int, default=128, help="digits per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (one-cycle schedule)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        raise UsageError("--epochs and --batch_size must be >= 1 and --lr > 0")
    out = check_out(args.out, args.overwrite)
    start = time.perf_counter()
    net = train(args.epochs, args.batch_size, args.lr, args.seed)
    seconds = time.perf_counter() - start
    save(net, out, args.overwrite)
    print(report(net, out, seconds, args.epochs, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
