#!/usr/bin/env python
"""Minibatch discrimination: a D step with the layer against the same D without it, new layer vs old.

The layer of Salimans et al. 2016 with the reference code's B = 100 kernels of C = 5, added to the
head of the reference MNIST discriminator (``improved_mnist``, A = 250 features; ``--arch`` picks
another) as build.py adds it. Each variant is timed as forward + backward of one batch of random
images in [-1, 1] (D's BCE loss on "real" targets), in training mode:

  plain       D without minibatch discrimination
  mbd         D with it (gan_lightning.layers.MinibatchDiscrimination)
  mbd_old     the same D and weights with the layer computed as before issue 12: torch.cdist(p=1)
              over (B, N, C), exp, self-pairs masked; cdist's backward allocates (B, N, N, C)
  layer       the layer alone on (N, A) features, forward + backward
  layer_old   the same for the old computation

Variants run interleaved (order reversed every other round), after one warm-up call each; the
medians of the rounds are reported, and what matters are the ratios within one run (the machine
is shared and noisy). Peak memory (``--memory``): how much the peak RSS of a fresh process grows
during one forward + backward of the layer alone (CPU), or torch.cuda.max_memory_allocated (GPU).
Outputs and gradients of the two layers are compared on every batch size (`max_rel_diff`).

    python bench/mbd.py --json                 # batches 128 and 512, 7 rounds, memory
    python bench/mbd.py --quick --json         # 3 rounds, no memory (about 15 s on one CPU core)
    python bench/mbd.py --batches 64,256 --arch dcgan --width 64
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_lightning.layers import MinibatchDiscrimination, add_minibatch_discrimination
from gan_lightning.networks import NETWORKS

VARIANTS = ("plain", "mbd", "mbd_old", "layer", "layer_old")
DATA_SHAPES = {"improved_mnist": (1, 28, 28), "dcgan": (1, 32, 32), "mlp": (2,)}
TARGET = {"batch": 512, "max_mbd_over_plain": 3.0}  # issue 12: the D step with MBD at most 3x the plain step


def legacy_minibatch_features(f: Tensor, T: Tensor) -> Tensor:
    """The computation before issue 12 (kept here only to compare against): (N, A), (A, B, C) -> (N, B)."""
    m = torch.einsum("na,abc->bnc", f, T)  # (B, N, C)
    dist = torch.cdist(m, m, p=1)  # (B, N, N)
    self_pair = torch.eye(f.shape[0], dtype=torch.bool, device=f.device)  # (N, N)
    return torch.exp(-dist).masked_fill(self_pair, 0.0).sum(dim=2).transpose(0, 1)  # (N, B)


class LegacyMinibatchDiscrimination(MinibatchDiscrimination):
    """The same layer and parameters, with :func:`legacy_minibatch_features`."""

    def forward(self, f: Tensor) -> Tensor:
        o = legacy_minibatch_features(f, self.T)
        return torch.cat([f, o if self.bias is None else o + self.bias], dim=1)


def legacy_copy(layer: MinibatchDiscrimination) -> LegacyMinibatchDiscrimination:
    old = LegacyMinibatchDiscrimination(layer.in_features, layer.kernels, layer.kernel_dim,
                                        weight_norm=layer.log_scale is not None, bias=layer.bias is not None)
    old.load_state_dict(layer.state_dict())
    return old.to(layer.weight.device)


def build_discriminators(args, device: torch.device) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(plain, mbd, mbd_old): D without the layer, then with it (new and old computation), same weights."""
    torch.manual_seed(0)
    arch = NETWORKS[args.arch]
    plain = arch.discriminator(data_shape=DATA_SHAPES[args.arch], width=args.width, norm="none").to(device)
    mbd = add_minibatch_discrimination(copy.deepcopy(plain), args.kernels, args.kernel_dim).to(device)
    mbd_old = copy.deepcopy(mbd)
    mbd_old.head[0] = legacy_copy(mbd.head[0])
    return plain, mbd, mbd_old


def d_step(d: nn.Module, x: Tensor) -> None:
    """Forward + backward of D's loss on one batch: -log sigmoid(D(x))."""
    d.zero_grad(set_to_none=True)
    F.softplus(-d(x)).mean().backward()


def layer_step(layer: nn.Module, f: Tensor, r: Tensor) -> None:
    """Forward + backward of the layer alone: (N, A) -> (N, A + B), reduced by a fixed random vector."""
    layer.zero_grad(set_to_none=True)
    f.grad = None
    (layer(f) @ r).sum().backward()


def compare_layers(layer: MinibatchDiscrimination, f: Tensor) -> dict[str, float]:
    """max |new - old| / max |old| of the output and of each gradient (f and the layer's parameters; the worst)."""
    results = []
    for lay in (layer, legacy_copy(layer)):
        x = f.detach().clone().requires_grad_(True)
        y = lay(x)
        results.append((y, torch.autograd.grad(y.square().sum(), [x, *lay.parameters()])))
    (y_new, g_new), (y_old, g_old) = results

    def rel(a: Tensor, b: Tensor) -> float:
        return (a - b).abs().max().item() / b.abs().max().clamp_min(1e-30).item()

    return {"output": rel(y_new, y_old), "grad": max(rel(a, b) for a, b in zip(g_new, g_old))}


def memory_probe(args) -> float:
    """MiB the peak memory grows during one forward + backward of the layer alone (run in a fresh process).

    A step on 2 examples runs first, so one-time set-up (thread pools, kernels) is not counted.
    """
    device = torch.device(args.device)
    layer = MinibatchDiscrimination(args.features, args.kernels, args.kernel_dim).to(device)
    if args.memory_probe == "layer_old":
        layer = legacy_copy(layer)
    f = torch.randn(args.probe_batch, args.features, device=device, requires_grad=True)
    r = torch.randn(layer.out_features, device=device)
    layer_step(layer, f[:2].detach().requires_grad_(True), r)  # one-time library set-up, not counted
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        layer_step(layer, f, r)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:  # Linux: reset the process's peak RSS (VmHWM), which ru_maxrss would inherit from the parent
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status_kib("VmRSS")
        layer_step(layer, f, r)
        return (_status_kib("VmHWM") - base) / 1024
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        layer_step(layer, f, r)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))


def peak_memory(args, variant: str, batch: int, features: int) -> float:
    cmd = [sys.executable, __file__, "--memory_probe", variant, "--probe_batch", str(batch), "--features",
           str(features), "--kernels", str(args.kernels), "--kernel_dim", str(args.kernel_dim), "--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def bench_batch(args, batch: int, device: torch.device, sync: Callable[[], None]) -> dict:
    plain, mbd, mbd_old = build_discriminators(args, device)
    layer, layer_old = mbd.head[0], mbd_old.head[0]
    g = torch.Generator().manual_seed(batch)
    x = (torch.rand(batch, *DATA_SHAPES[args.arch], generator=g) * 2 - 1).to(device)
    with torch.no_grad():
        f = plain.features(x).detach().requires_grad_(True)  # (N, A): D's real features
    r = torch.randn(layer.out_features, generator=g).to(device)
    calls = {
        "plain": lambda: d_step(plain, x), "mbd": lambda: d_step(mbd, x), "mbd_old": lambda: d_step(mbd_old, x),
        "layer": lambda: layer_step(layer, f, r), "layer_old": lambda: layer_step(layer_old, f, r),
    }
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        calls[v]()
    for rnd in range(args.rounds):
        for v in VARIANTS if rnd % 2 == 0 else reversed(VARIANTS):
            sync()
            start = time.perf_counter()
            calls[v]()
            sync()
            times[v].append(time.perf_counter() - start)
        print(f"batch {batch} round {rnd + 1}/{args.rounds}: "
              + ", ".join(f"{v} {times[v][-1] * 1e3:.1f} ms" for v in VARIANTS), file=sys.stderr)
    med = {v: statistics.median(times[v]) for v in VARIANTS}
    result = {
        "step_s": {v: round(med[v], 5) for v in VARIANTS},
        "ratio": {
            "mbd_over_plain": round(med["mbd"] / med["plain"], 3),
            "mbd_old_over_plain": round(med["mbd_old"] / med["plain"], 3),
            "layer_over_plain": round(med["layer"] / med["plain"], 3),
            "layer_old_over_plain": round(med["layer_old"] / med["plain"], 3),
            "speedup_step": round(med["mbd_old"] / med["mbd"], 2),
            "speedup_layer": round(med["layer_old"] / med["layer"], 2),
        },
        "max_rel_diff": compare_layers(layer, f),
        "all_s": {v: [round(t, 5) for t in times[v]] for v in VARIANTS},
    }
    if args.memory:
        result["peak_mem_mib"] = {v: peak_memory(args, v, batch, f.shape[1]) for v in ("layer", "layer_old")}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="128,512", help="comma-separated batch sizes N")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians are reported)")
    p.add_argument("--arch", default="improved_mnist", choices=sorted(DATA_SHAPES), help="the discriminator")
    p.add_argument("--width", type=int, default=64, help="D width (mlp, dcgan; improved_mnist ignores it)")
    p.add_argument("--kernels", type=int, default=100, help="B")
    p.add_argument("--kernel_dim", type=int, default=5, help="C")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the layers' peak memory in fresh processes")
    p.add_argument("--quick", action="store_true", help="3 rounds, no memory measurement")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--memory_probe", choices=("layer", "layer_old"), help=argparse.SUPPRESS)
    p.add_argument("--probe_batch", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--features", type=int, default=250, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(memory_probe(args))
        return 0
    if args.quick:
        args.rounds, args.memory = 3, False
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/mbd.py: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    batches = [int(b) for b in args.batches.split(",")]
    per_batch = {str(n): bench_batch(args, n, device, sync) for n in batches}
    target = per_batch.get(str(TARGET["batch"]))
    result = {
        "batches": per_batch,
        "target": {**TARGET, "mbd_over_plain": target["ratio"]["mbd_over_plain"] if target else None,
                   "met": target["ratio"]["mbd_over_plain"] <= TARGET["max_mbd_over_plain"] if target else None},
        "arch": args.arch, "kernels": args.kernels, "kernel_dim": args.kernel_dim, "rounds": args.rounds,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.arch} D, MBD {args.kernels} x {args.kernel_dim}, {result['device']}, "
          f"{result['threads']} threads, medians of {args.rounds} rounds (ms)")
    print(f"{'batch':>6} " + " ".join(f"{v:>10}" for v in VARIANTS) + f" {'mbd/plain':>10} {'old/plain':>10}")
    for n, r in per_batch.items():
        print(f"{n:>6} " + " ".join(f"{r['step_s'][v] * 1e3:10.1f}" for v in VARIANTS)
              + f" {r['ratio']['mbd_over_plain']:10.2f} {r['ratio']['mbd_old_over_plain']:10.2f}")
        if "peak_mem_mib" in r:
            print(f"{'':>6} peak memory of the layer: new {r['peak_mem_mib']['layer']} MiB, "
                  f"old {r['peak_mem_mib']['layer_old']} MiB")
    if target:
        print(f"target: mbd/plain at batch {TARGET['batch']} <= {TARGET['max_mbd_over_plain']}: "
              f"{'met' if result['target']['met'] else 'missed'} ({result['target']['mbd_over_plain']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
