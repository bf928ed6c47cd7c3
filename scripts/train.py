#!/usr/bin/env python
"""Train a GAN: `python scripts/train.py --help` lists every flag (the fields of TrainConfig)."""

import sys

from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
