#!/usr/bin/env python
"""scripts/train.py with batches and latents that do not depend on how a step is split over processes.

- Real batches: Lightning puts a DistributedSampler around the project's sampler and (for training)
  shuffles its order again; here it does not, so rank r gets items r, r + world, ... of the run's
  order, and the ranks' batches of a step together are the batch of a 1-process run.
- Latents: at G step k every process draws the same (n x world, z_dim) tensor, seeded by k (so a
  resumed run draws what the straight run drew), and rank r takes rows [r n, (r + 1) n).

A 2-process run of batch B then sees at every step the real points and latents of a 1-process run
of batch 2B, and their updates agree up to float rounding. Used by tests/test_ddp.py; Lightning
starts rank 1 by running this script again.
"""

import sys

import torch
from lightning.pytorch.trainer.connectors import data_connector

from gan_lightning.modules.base import GeneratorSystem
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main


def matched_z(self, n: int) -> torch.Tensor:
    world, rank = self.trainer.world_size, self.global_rank
    z = torch.randn(n * world, self.z_dim, generator=torch.Generator().manual_seed(10_000 + self.g_step_count))
    return z[rank * n:(rank + 1) * n].to(self.fixed_z.device)


def unshuffled(make_sampler):
    def make(dataloader, shuffle, *args, **kwargs):
        return make_sampler(dataloader, False, *args, **kwargs)

    return make


if __name__ == "__main__":
    GeneratorSystem.sample_z = matched_z
    data_connector._get_distributed_sampler = unshuffled(data_connector._get_distributed_sampler)
    sys.exit(run_cli(main))
