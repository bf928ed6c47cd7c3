#!/usr/bin/env python
"""What ``ddp_find_unused_parameters_true`` (our default with several processes) costs, on 2 CPU processes.

The same GAN module (by default a DCGAN of widths 32 on 32x32 images, one D and one G update per
batch, diagnostics off; random data of the data set's shape) is trained by 2 processes over gloo,
one thread each, under
  (a) find_unused:  Lightning's ``ddp_find_unused_parameters_true``: one DDP around the whole
                    system; every backward (D's, then G's) searches the autograd graph for unused
                    parameters and all-reduces the gradient buckets of both networks;
  (b) per_network:  plain DDP (``find_unused_parameters=False``) around G and around D separately
                    (the strategy below): D's backward reduces only D's gradients, G's only G's; G's
                    update calls D under ``no_sync`` (D is frozen then, it gets no gradients);
  (c) ddp_gan:      the project's strategy (gan_lightning/trainer/ddp.py): no DDP wrapper; each optimizer's
                    gradients are averaged in one coalesced all-reduce just before its step, buffers
                    are broadcast from rank 0 at the start of each step;
  (d) single:       1 process, no DDP (reference for the per-process step time).
Each (variant, round) is a fresh ``python bench/ddp.py --worker`` (Lightning starts rank 1 by
running the same command). Variants run interleaved over rounds, order alternating; medians of
steps/s over rounds are reported, with ratios to (a). A step is one batch per process (one D and
one G update); a 2-process step sees 2 batches.

    OMP_NUM_THREADS=1 python bench/ddp.py                 # table
    python bench/ddp.py --json --rounds 5 --steps 60      # one JSON object
    python bench/ddp.py -- --g_width 64 --d_width 64      # after --: train.py flags of the model
    python bench/ddp.py -- --dataset ring --batch_size 64 # MLPs on 2-D points: little compute per step
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("find_unused", "per_network", "ddp_gan", "single")
MODEL_FLAGS = ["--dataset=mnist5k", "--image_size=32", "--g_width=32", "--d_width=32", "--batch_size=32",
               "--diagnostics=false"]


# -- the worker: one variant, one measurement ------------------------------------------------
def per_network_parts():
    """(strategy class, module class) of variant (b), built lazily so the parent never imports Lightning."""
    import torch
    from lightning.pytorch.strategies import DDPStrategy
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from gan_lightning.modules import GAN

    class DForward(nn.Module):
        """D as GAN.discriminate calls it, as one forward: DDP only reduces what ran through forward."""

        def __init__(self, d: nn.Module) -> None:
            super().__init__()
            self.d = d

        def forward(self, x):  # (B, *shape) -> logits (B,), features (B, F)
            features = self.d.features(x)
            return self.d.head(features).squeeze(1), features

    class PerNetworkGAN(GAN):
        def discriminate(self, x):
            ddp = self.__dict__.get("d_ddp")  # not a registered submodule: the state_dict stays GAN's
            if ddp is None:
                return super().discriminate(x)
            d_frozen = not next(self.discriminator.parameters()).requires_grad  # G's update
            with ddp.no_sync() if d_frozen else contextlib.nullcontext():
                return ddp(self.d_input(x))

    class PerNetworkDDP(DDPStrategy):
        """Plain DDP around G and around D instead of around the LightningModule."""

        def configure_ddp(self) -> None:
            module = self.model  # left unwrapped: Lightning then calls training_step directly
            ids = self.determine_ddp_device_ids()
            module.generator = DDP(module.generator, device_ids=ids, find_unused_parameters=False)
            object.__setattr__(module, "d_ddp", DDP(DForward(module.discriminator), device_ids=ids,
                                                    find_unused_parameters=False))

    return PerNetworkDDP, PerNetworkGAN, torch


def worker(variant: str, steps: int, warmup: int, model_flags: list[str], result: str) -> None:
    import warnings

    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning.config import parse_args, resolve
    from gan_lightning.build import build_module
    from gan_lightning.data.datasets import DATASETS, data_shape

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    cfg = parse_args(model_flags)[0]
    world = 1 if variant == "single" else 2
    shape = data_shape(DATASETS[cfg.dataset], cfg.image_size)  # (C, H, W), or (2,) for points
    n = (warmup + steps) * cfg.batch_size * world
    data = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (N, *shape) in [-1, 1]
    loader = DataLoader(TensorDataset(data, torch.zeros(n, dtype=torch.long)), batch_size=cfg.batch_size)
    torch.manual_seed(0)
    module = build_module(resolve(cfg), shape)
    strategy = "auto" if variant == "single" else "ddp_find_unused_parameters_true"
    if variant == "per_network":
        strategy_cls, module_cls, _ = per_network_parts()
        module.__class__ = module_cls  # the same GAN, with discriminate() going through D's DDP
        strategy = strategy_cls(process_group_backend="gloo")
    elif variant == "ddp_gan":
        from gan_lightning.trainer.ddp import GradientAveragingDDP

        strategy = GradientAveragingDDP(process_group_backend="gloo")
    times: dict[str, float] = {}

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                times["start"] = time.perf_counter()

        def on_train_end(self, trainer, pl_module):
            times["end"] = time.perf_counter()
            # Both networks' weights, summed (float64): equal on every rank if gradients were reduced.
            total = sum(p.detach().double().abs().sum() for p in pl_module.parameters())
            times["weights"] = trainer.strategy.all_gather(total.reshape(1)).flatten().tolist()

    trainer = L.Trainer(accelerator="cpu", devices=world, strategy=strategy, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Timer()])
    trainer.fit(module, train_dataloaders=loader)
    if trainer.is_global_zero:
        assert int(module.g_steps) == warmup + steps, f"{variant}: {int(module.g_steps)} G steps"
        weights = times["weights"]
        assert max(weights) - min(weights) <= 1e-9 * max(weights), f"{variant}: ranks diverged: {weights}"
        params = {name: sum(p.numel() for p in getattr(module, net).parameters())
                  for name, net in (("g", "generator"), ("d", "discriminator"))}
        Path(result).write_text(json.dumps({"steps_per_s": steps / (times["end"] - times["start"]),
                                            "weights": weights[0], "params": params}))


# -- the parent: interleaved rounds, medians, ratios -----------------------------------------
def measure(variant: str, args, model_flags: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                           os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--result", str(out), "--", *model_flags]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if not out.is_file():
            sys.exit(f"{variant} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        if proc.returncode:  # gloo sometimes aborts at process exit, after rank 0 wrote its result
            print(f"{variant}: exit {proc.returncode} after the result was written (kept)", file=sys.stderr)
        return json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="timed batches per process, per variant and round")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    model_flags = MODEL_FLAGS + extra
    if args.worker:
        worker(args.worker, args.steps, args.warmup, model_flags, args.result)
        return 0
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    weights: dict[str, float] = {}
    for r in range(args.rounds):
        for v in VARIANTS if r % 2 == 0 else reversed(VARIANTS):  # alternate order against drift
            found = measure(v, args, model_flags)
            rates[v].append(found["steps_per_s"])
            weights[v], params = found["weights"], found["params"]
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v} {rates[v][-1]:.2f} steps/s" for v in VARIANTS),
              file=sys.stderr)
    med = {v: statistics.median(rates[v]) for v in VARIANTS}
    from gan_lightning.config import parse_args

    batch = parse_args(model_flags)[0].batch_size
    result = {
        "steps_per_s": med,
        "images_per_s": {v: med[v] * batch * (1 if v == "single" else 2) for v in VARIANTS},
        "per_network_over_find_unused": med["per_network"] / med["find_unused"],
        "find_unused_over_single": med["find_unused"] / med["single"],
        "per_network_over_single": med["per_network"] / med["single"],
        "ddp_gan_over_find_unused": med["ddp_gan"] / med["find_unused"],
        "ddp_gan_over_single": med["ddp_gan"] / med["single"],
        "all_rounds": rates,
        # Same seed, data and latents: (a) and (b) make the same updates, up to float rounding.
        "final_weights_rel_diff": abs(weights["per_network"] - weights["find_unused"]) / abs(weights["find_unused"]),
        "ddp_gan_weights_rel_diff": abs(weights["ddp_gan"] - weights["find_unused"]) / abs(weights["find_unused"]),
        "params": params, "batch_size": batch,
        "processes": 2, "threads_per_process": 1, "backend": "gloo", "steps": args.steps,
        "warmup": args.warmup, "rounds": args.rounds, "model_flags": model_flags,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'variant':<12} {'steps/s':>8} {'images/s':>9} {'vs find_unused':>15}")
    for v in VARIANTS:
        print(f"{v:<12} {med[v]:8.2f} {result['images_per_s'][v]:9.1f} {med[v] / med['find_unused']:15.2f}")
    print(f"model: {' '.join(model_flags)} (G {params['g']:,} and D {params['d']:,} parameters); "
          f"2 processes x 1 thread (gloo); medians of {args.rounds} rounds")
    print(f"final weights vs find_unused, relative difference: per_network {result['final_weights_rel_diff']:.1e}, "
          f"ddp_gan {result['ddp_gan_weights_rel_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
