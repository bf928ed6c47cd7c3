#!/usr/bin/env python
"""Training-step throughput: a hand-written PyTorch loop vs the GAN LightningModule, with and without diagnostics.

The same DCGAN (32x32, batch 64, one D and one G update per step) is trained by
  (a) raw:        a minimal PyTorch loop,
  (b) lightning:  our GAN module under the Trainer, no callbacks, no logger,
  (c) default:    (b) + the default diagnostics (D accuracy, gradient norms at the logging cadence,
                  shadow norms every 50 steps),
  (d) every_step: (b) + every diagnostic on every step.
Variants run interleaved, several rounds; each reports its median steps/s. Ratios are taken within
this one run, on this machine. FLOP utilization = achieved FLOP/s of (b), from a FLOP count of one
step, divided by the torch.mm float32 peak measured in this run.

    python bench/step.py              # table
    python bench/step.py --json       # one JSON object
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch

VARIANTS = ("raw", "lightning", "default", "every_step")


def make_config(args):
    from gan_lightning.config import TrainConfig

    return TrainConfig(dataset="mnist5k", image_size=32, batch_size=args.batch_size, g_width=64, d_width=64)


def make_module(args):
    from gan_lightning.build import build_module

    torch.manual_seed(0)
    return build_module(make_config(args), (1, 32, 32))


def fake_data(args, steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(steps * args.batch_size, 1, 32, 32, generator=g) * 2 - 1  # (N, 1, 32, 32) in [-1, 1]


def run_raw(args, steps: int) -> float:
    """Seconds for `steps` steps of a minimal loop (after one warm-up step)."""
    from gan_lightning.losses import d_bce_loss, g_nonsaturating_loss

    module = make_module(args)
    g, d = module.generator, module.discriminator
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = fake_data(args, steps + 1).split(args.batch_size)

    def step(real):
        fake = g(torch.randn(len(real), module.z_dim))
        d_loss = d_bce_loss(d(real), d(fake.detach()))
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        for p in d.parameters():
            p.requires_grad_(False)
        g_loss = g_nonsaturating_loss(d(fake))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        for p in d.parameters():
            p.requires_grad_(True)
        g_opt.step()

    step(data[0])
    start = time.perf_counter()
    for real in data[1:]:
        step(real)
    return time.perf_counter() - start


class _Timer:
    """Callback-free timing: wall time between the first and the last training batch."""

    def __init__(self):
        import lightning as L

        outer = self

        class T(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == 1:  # batch 0 is the warm-up
                    outer.start = time.perf_counter()

            def on_train_end(self, trainer, pl_module):
                outer.end = time.perf_counter()

        self.callback = T()


def run_lightning(args, steps: int, variant: str) -> float:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from gan_lightning.callbacks import DiscriminatorAccuracy, GradientNorms

    module = make_module(args)
    data = fake_data(args, steps + 1)
    loader = DataLoader(TensorDataset(data, torch.zeros(len(data), dtype=torch.long)), batch_size=args.batch_size)
    timer = _Timer()
    callbacks = [timer.callback]
    if variant == "default":
        callbacks += [DiscriminatorAccuracy(every_n_steps=10), GradientNorms(every_n_steps=10, shadow_every_n_steps=50)]
    elif variant == "every_step":
        callbacks += [DiscriminatorAccuracy(every_n_steps=1), GradientNorms(every_n_steps=1, per_layer=True,
                                                                           shadow_every_n_steps=1)]
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, log_every_n_steps=10,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.end - timer.start


def step_flops(args) -> int:
    """FLOPs of one training step (D on real and fake, backward, G forward/backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    from gan_lightning.losses import d_bce_loss, g_nonsaturating_loss

    module = make_module(args)
    g, d = module.generator, module.discriminator
    real = fake_data(args, 1)
    from gan_lightning.torch_utils import frozen

    with FlopCounterMode(display=False) as counter:
        fake = g(torch.randn(len(real), module.z_dim))
        d_bce_loss(d(real), d(fake.detach())).backward()
        with frozen(d):  # as in training: G's update computes no gradients of D's weights
            g_nonsaturating_loss(d(fake)).backward()
    return counter.get_total_flops()


def mm_peak(size: int = 4096, repeats: int = 5) -> float:
    """Best float32 torch.mm FLOP/s over a few repeats (4096^2: large enough to reach the peak)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    peaks = []
    for r in range(args.rounds):
        peaks.append(mm_peak())
        for v in VARIANTS if r % 2 == 0 else reversed(VARIANTS):  # alternate order against drift
            seconds = run_raw(args, args.steps) if v == "raw" else run_lightning(args, args.steps, v)
            times[v].append(args.steps / seconds)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v} {times[v][-1]:.2f} it/s" for v in VARIANTS),
              file=sys.stderr)
    med = {v: statistics.median(times[v]) for v in VARIANTS}
    flops = step_flops(args)
    peak = statistics.median(peaks)
    result = {
        "steps_per_s": med,
        "lightning_over_raw": med["lightning"] / med["raw"],
        "diagnostics_default_overhead": med["lightning"] / med["default"] - 1,
        "diagnostics_every_step_overhead": med["lightning"] / med["every_step"] - 1,
        "flops_per_step": flops,
        "mm_peak_flops": peak,
        "flop_utilization": flops * med["lightning"] / peak,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'variant':<12} {'steps/s':>8}")
        for v in VARIANTS:
            print(f"{v:<12} {med[v]:8.3f}")
        for k in ("lightning_over_raw", "diagnostics_default_overhead", "diagnostics_every_step_overhead",
                  "flop_utilization"):
            print(f"{k:<34} {result[k]:.3f}")
        print(f"{'GFLOP per step':<34} {flops / 1e9:.2f}   torch.mm peak {peak / 1e9:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
