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
    python bench/step.py --accelerator gpu --json   # the same on a CUDA GPU (bench/gpu_check.py runs it)

Both loops take each batch from host memory to the device, as a DataLoader-fed run does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import warnings
from typing import Callable, ContextManager

import torch
from torch import Tensor, nn

VARIANTS = ("raw", "lightning", "default", "every_step")


def make_config(args):
    from gan_lightning.config import TrainConfig

    return TrainConfig(dataset="mnist5k", image_size=32, batch_size=args.batch_size, g_width=64, d_width=64)


def build(cfg, data_shape: tuple[int, ...]):
    """The project's GAN module for ``cfg``, weights drawn from seed 0 (the one place the benches build it)."""
    from gan_lightning.build import build_module
    from gan_lightning.config import resolve

    torch.manual_seed(0)
    return build_module(resolve(cfg), data_shape)


def make_module(args):
    return build(make_config(args), (1, 32, 32))


def fake_data(args, steps: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(steps * args.batch_size, 1, 32, 32, generator=g) * 2 - 1  # (N, 1, 32, 32) in [-1, 1]


def gan_step(g: nn.Module, d: nn.Module, d_opt: torch.optim.Optimizer, g_opt: torch.optim.Optimizer, real: Tensor,
             z: Tensor, autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
    """One D update, then one G update, as the GAN module trains (non-saturating loss).

    Args:
        g, d: the networks (or their ``torch.compile`` wrappers, which share the parameters).
        real: (B, *data_shape) data batch; z: (B, z_dim) latents.
        autocast: context of the forward passes (``torch.autocast`` for mixed precision);
            backward passes run outside it, as PyTorch recommends.
    """
    from gan_lightning.core.losses import d_bce_loss, g_nonsaturating_loss
    from gan_lightning.torch_utils import frozen

    with autocast():
        fake = g(z)
        d_loss = d_bce_loss(d(real), d(fake.detach()))
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    with frozen(d):  # G's update: gradients flow through D to G's output, D's weights get none
        with autocast():
            g_loss = g_nonsaturating_loss(d(fake))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
    g_opt.step()


def device_of(args) -> torch.device:
    return torch.device("cuda" if args.accelerator == "gpu" else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_raw(args, steps: int) -> float:
    """Seconds for `steps` steps of a minimal loop (after one warm-up step)."""
    device = device_of(args)
    module = make_module(args).to(device)
    g, d = module.generator, module.discriminator
    d_opt, g_opt = module.configure_optimizers()
    data = fake_data(args, steps + 1).split(args.batch_size)
    first = data[0].to(device)
    gan_step(g, d, d_opt, g_opt, first, torch.randn(len(first), module.z_dim, device=device))
    _sync(device)
    start = time.perf_counter()
    for real in data[1:]:
        real = real.to(device, non_blocking=True)
        gan_step(g, d, d_opt, g_opt, real, torch.randn(len(real), module.z_dim, device=device))
    _sync(device)
    return time.perf_counter() - start


class _Timer:
    """Callback-free timing: wall time from batch ``warmup`` (the batches before it warm up) to the end of fit.

    On a GPU both ends wait for the device (``torch.cuda.synchronize``), so queued kernels are counted.
    """

    def __init__(self, warmup: int = 1):
        import lightning as L

        outer = self

        def sync(pl_module):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)

        class T(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if batch_idx == warmup:
                    sync(pl_module)
                    outer.start = time.perf_counter()

            def on_train_end(self, trainer, pl_module):
                sync(pl_module)
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
        accelerator=args.accelerator, devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, log_every_n_steps=10,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.end - timer.start


def count_step_flops(module, real: Tensor) -> int:
    """FLOPs of one :func:`gan_step` (convolutions and matmuls, forward and backward) of a copy of ``module``.

    Counted as trained: D on real and fake, D's backward, then G's forward and backward through a
    frozen D (no gradients of D's weights). The count does not depend on the dtype.
    """
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    module = copy.deepcopy(module)
    d_opt, g_opt = module.configure_optimizers()
    z = torch.randn(len(real), module.z_dim, device=real.device)
    with FlopCounterMode(display=False) as counter:
        gan_step(module.generator, module.discriminator, d_opt, g_opt, real, z)
    return counter.get_total_flops()


def step_flops(args) -> int:
    """FLOPs of one training step (D on real and fake, backward, G forward/backward)."""
    return count_step_flops(make_module(args), fake_data(args, 1))


def mm_peak(size: int = 4096, repeats: int = 5, device: str | torch.device = "cpu",
            dtype: torch.dtype = torch.float32) -> float:
    """Best torch.mm FLOP/s over a few repeats (4096^2 reaches a CPU's peak; a GPU needs ~8192^2).

    On CUDA, float32 runs in the math mode ``torch.backends.cuda.matmul.allow_tf32`` selects.
    """
    device = torch.device(device)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu"), help="where both loops train")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("error: --accelerator gpu: no CUDA GPU here", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    peaks = []
    for r in range(args.rounds):
        peaks.append(mm_peak(8192 if args.accelerator == "gpu" else 4096, device=device_of(args)))
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
        "accelerator": args.accelerator,
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
