#!/usr/bin/env python
"""GPU throughput of the DCGAN training step: images/s and model FLOP utilization (MFU) per precision and layout.

The project's DCGAN (64x64 RGB, widths 64, batch 128; ``gan_lightning.build.build_module``) is
trained on synthetic data that lives on the GPU, one D and one G update per step
(``bench/step.py``'s ``gan_step``: non-saturating loss, D frozen in G's update, the module's Adams):
  fp32            float32 weights and activations (convolutions use TF32 tensor cores where
                  ``torch.backends.cudnn.allow_tf32`` is on, PyTorch's default);
  bf16            forward passes under ``torch.autocast(bfloat16)``: what Lightning's bf16-mixed does;
  channels_last   NHWC weights and data;
  compile         G and D through ``torch.compile`` (compiled during the warm-up steps);
and combinations written with ``+`` (``bf16+channels_last+compile``); cuDNN autotuning
(``torch.backends.cudnn.benchmark``) is on in every run. Variants run interleaved
over rounds, order alternating; each reports its median. MFU = FLOPs of one step (torch's
FlopCounterMode: convolutions and matmuls, forward and backward) x steps/s / peak, where the peak
is the best torch.mm of the variant's math mode measured on this GPU in this run (bf16 for bf16
variants; TF32 for the others when cuDNN may use it, else float32). The datasheet peaks printed
beside are constants, not measurements. With several GPUs, the Lightning Trainer runs the same
module with devices=1 and devices=N (the project's default strategy for N > 1) at 32-true and
bf16-mixed, one process per GPU, and the scaling is reported.

    python bench/gpu.py                          # table
    python bench/gpu.py --json                   # one JSON object
    python bench/gpu.py --variants fp32,bf16+compile --compile_mode max-autotune
    python bench/gpu.py --allow_cpu --steps 2 --batch_size 4 --image_size 32 --json   # CPU smoke test

Without a CUDA GPU it exits with status 2 unless --allow_cpu (a smoke test of the script, not a
measurement); --processes N there runs the multi-process part on N CPU processes (gloo).
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

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # bench/step.py's helpers; gan_lightning from this checkout

from gan_lightning.runs.cli import run_cli  # noqa: E402
from gan_lightning.errors import UsageError  # noqa: E402

PARTS = ("fp32", "bf16", "channels_last", "compile")
DEFAULT_VARIANTS = "fp32,bf16,channels_last,compile,bf16+channels_last,bf16+compile,bf16+channels_last+compile"
PRECISIONS = ("32-true", "bf16-mixed")  # of the Lightning runs, 1 vs N processes
# NVIDIA datasheets, dense tensor-core numbers (no sparsity), TFLOP/s. Labelled constants, never measured here.
DATASHEET_TFLOPS = {
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5},
    "H100 SXM": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gpu.py", description=__doc__.splitlines()[1], allow_abbrev=False)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated; parts {', '.join(PARTS)} "
                                                                 "joined with +")
    p.add_argument("--steps", type=int, default=50, help="timed steps per variant and round")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first (compilation included)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    p.add_argument("--batch_size", type=int, default=128, help="images per step (per GPU in the Lightning runs)")
    p.add_argument("--image_size", type=int, default=64, help="DCGAN image side: 28, 32 or 64")
    p.add_argument("--width", type=int, default=64, help="G and D width (base channels)")
    p.add_argument("--compile_mode", default="default", help="torch.compile mode: default, reduce-overhead, "
                                                             "max-autotune")
    p.add_argument("--mm_size", type=int, default=0, help="side of the peak-measuring matrices (0: 8192 on a GPU)")
    p.add_argument("--processes", type=int, default=-1,
                   help="N of the 1 vs N processes comparison (-1: every GPU; 0 or 1: skip it)")
    p.add_argument("--allow_cpu", action="store_true", help="run on the CPU when there is no GPU (smoke test)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one Lightning run, see worker()
    p.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="32-true", help=argparse.SUPPRESS)
    p.add_argument("--accelerator", default="gpu", help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    return p


def parse_variants(text: str) -> list[frozenset[str]]:
    """``"fp32,bf16+compile"`` -> [{fp32}, {bf16, compile}]; fp32 is the absence of bf16."""
    variants = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        parts = frozenset(name.split("+"))
        if not parts <= set(PARTS) or {"fp32", "bf16"} <= parts:
            raise UsageError(f"--variants: {name!r} is not a + of {', '.join(PARTS)} "
                             f"(fp32 and bf16 exclude each other)")
        variants.append(parts)
    if not variants:
        raise UsageError("--variants: give at least one variant")
    return variants


def variant_name(parts: frozenset[str]) -> str:
    named = [p for p in PARTS if p in parts and p != "fp32"]
    return "+".join(named if "bf16" in named else ["fp32", *named])


def make_config(args):
    from gan_lightning.config import TrainConfig

    return TrainConfig(dataset="celeba", image_size=args.image_size, batch_size=args.batch_size, arch="dcgan",
                       g_width=args.width, d_width=args.width)


# -- one process: the variants --------------------------------------------------------------
class Variant:
    """The module, optimizers and fixed GPU batch of one variant, kept across rounds."""

    def __init__(self, parts: frozenset[str], args, device) -> None:
        import torch

        import step

        self.name = variant_name(parts)
        shape = (3, args.image_size, args.image_size)
        self.module = step.build(make_config(args), shape).to(device)
        g, d = self.module.generator, self.module.discriminator
        self.real = torch.rand(args.batch_size, *shape, device=device) * 2 - 1  # (B, 3, H, W) in [-1, 1]
        if "channels_last" in parts:
            g.to(memory_format=torch.channels_last)
            d.to(memory_format=torch.channels_last)
            self.real = self.real.contiguous(memory_format=torch.channels_last)
        self.d_opt, self.g_opt = self.module.configure_optimizers()
        if "compile" in parts:
            g, d = torch.compile(g, mode=args.compile_mode), torch.compile(d, mode=args.compile_mode)
        self.g, self.d = g, d
        bf16 = "bf16" in parts
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        self.peak = "bf16" if bf16 else ("tf32" if device.type == "cuda" and torch.backends.cudnn.allow_tf32
                                         else "fp32")
        self.device = device
        self.run(args.warmup)
        self.rates: list[float] = []

    def run(self, steps: int) -> float:
        """Steps per second over ``steps`` steps, waiting for the GPU at both ends."""
        import torch

        import step

        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            z = torch.randn(len(self.real), self.module.z_dim, device=self.device)  # (B, z_dim)
            step.gan_step(self.g, self.d, self.d_opt, self.g_opt, self.real, z, self.autocast)
        sync()
        return steps / (time.perf_counter() - start)


def measure_peaks(device, size: int) -> dict[str, float]:
    """Best torch.mm FLOP/s in float32, TF32 (CUDA only) and bfloat16 on ``device``."""
    import torch

    import step

    peaks = {}
    if device.type == "cuda":
        kept = torch.backends.cuda.matmul.allow_tf32
        try:
            for name, tf32 in (("fp32", False), ("tf32", True)):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                peaks[name] = step.mm_peak(size, 10, device, torch.float32)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = kept
    else:
        peaks["fp32"] = step.mm_peak(size, 5, device, torch.float32)
    peaks["bf16"] = step.mm_peak(size, 10 if device.type == "cuda" else 5, device, torch.bfloat16)
    return peaks


def datasheet(name: str) -> tuple[str, dict[str, float]] | None:
    """The datasheet entry of a GPU named like ``torch.cuda.get_device_name()``, if this file knows it."""
    if "NVL" in name:  # H100 NVL, H200 NVL: other clocks and power, not in the table
        return None
    if "H100" in name:
        key = "H100 PCIe" if "PCIe" in name else "H100 SXM"
    else:
        key = next((k for k in DATASHEET_TFLOPS if k in name), "")
    return (key, DATASHEET_TFLOPS[key]) if key else None


# -- 1 vs N processes: the Lightning Trainer --------------------------------------------------
def worker(args) -> None:
    """One Lightning run (started as ``gpu.py --worker``; Lightning starts the other ranks the same way)."""
    import dataclasses
    import logging
    import warnings

    import lightning as L
    import torch
    from torch.utils.data import DataLoader, Dataset

    import step
    from gan_lightning.build import build_strategy
    from gan_lightning.config import resolve

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    cfg = resolve(dataclasses.replace(make_config(args), devices=str(args.devices), accelerator=args.accelerator))
    shape = (3, args.image_size, args.image_size)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", rank) if args.accelerator == "gpu" else torch.device("cpu")
    batches = args.warmup + args.steps

    class GPUBatches(Dataset):
        """``batches`` whole batches of one fixed random tensor already on this rank's GPU (no copies, no collate)."""

        def __init__(self) -> None:
            self.x = torch.rand(args.batch_size, *shape, device=device) * 2 - 1  # (B, 3, H, W)
            self.y = torch.zeros(args.batch_size, dtype=torch.long, device=device)

        def __len__(self) -> int:
            return batches

        def __getitem__(self, i: int):
            return self.x, self.y

    module = step.build(cfg, shape)
    timer = step._Timer(warmup=args.warmup)
    trainer = L.Trainer(accelerator=args.accelerator, devices=args.devices, strategy=build_strategy(cfg),
                        precision=args.precision, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer.callback],
                        use_distributed_sampler=False,  # every rank steps through its own `batches` batches
                        benchmark=True)
    trainer.fit(module, train_dataloaders=DataLoader(GPUBatches(), batch_size=None))
    if trainer.is_global_zero:
        assert int(module.g_steps) == batches, f"{int(module.g_steps)} G steps, expected {batches}"
        Path(args.result).write_text(json.dumps({"steps_per_s": args.steps / (timer.end - timer.start),
                                                 "strategy": cfg.strategy}))


def lightning_run(args, devices: int, precision: str) -> dict:
    """steps/s (per process) of one ``--worker`` run in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--devices", str(devices), "--precision",
               precision, "--accelerator", args.accelerator, "--result", str(out)]
        for key in ("steps", "warmup", "batch_size", "image_size", "width"):
            cmd += [f"--{key}", str(getattr(args, key))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH.parent),
                                                                          os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode or not out.is_file():
            raise RuntimeError(f"{devices} x {precision} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def multi_process(args, n: int, flops: int, peaks: dict[str, float]) -> dict:
    """Lightning at 1 and n processes for each precision: images/s, MFU per GPU, scaling efficiency."""
    result = {}
    for precision in PRECISIONS:
        runs = {k: lightning_run(args, k, precision) for k in (1, n)}
        peak = peaks["bf16"] if precision.startswith("bf16") else peaks.get("tf32", peaks["fp32"])
        row = {}
        for k, found in runs.items():
            rate = found["steps_per_s"]
            row[f"{k}_processes"] = {"steps_per_s": rate, "images_per_s": rate * args.batch_size * k,
                                     "mfu": flops * rate / peak, "strategy": found["strategy"]}
        row["scaling_efficiency"] = row[f"{n}_processes"]["images_per_s"] / (n * row["1_processes"]["images_per_s"])
        result[precision] = row
    return result


# -- the report ------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    for key in ("steps", "warmup", "rounds", "batch_size", "width"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key}: must be >= 1, got {getattr(args, key)}")
    if args.image_size not in (28, 32, 64):
        raise UsageError(f"--image_size: the DCGAN takes 28, 32 or 64, got {args.image_size}")
    if args.worker:
        worker(args)
        return 0
    variants = parse_variants(args.variants)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        raise UsageError("no CUDA GPU here (torch.cuda.is_available() is False): bench/gpu.py measures GPUs; "
                         "--allow_cpu runs it on the CPU as a smoke test")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import step

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels (train.py does not)
    args.accelerator = "gpu" if cuda else "cpu"
    gpus = torch.cuda.device_count() if cuda else 0
    n = gpus if args.processes < 0 else args.processes  # of the 1 vs N comparison
    if cuda and n > gpus:
        raise UsageError(f"--processes {n}: this machine has {gpus} GPUs")
    runs = [Variant(parts, args, device) for parts in variants]
    peak_runs: list[dict[str, float]] = []
    for r in range(args.rounds):
        peak_runs.append(measure_peaks(device, args.mm_size or (8192 if cuda else 256)))
        for v in runs if r % 2 == 0 else reversed(runs):  # alternate order against drift
            v.rates.append(v.run(args.steps))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{v.name} {v.rates[-1]:.2f} it/s" for v in runs),
              file=sys.stderr)
    peaks = {k: statistics.median(p[k] for p in peak_runs) for k in peak_runs[0]}
    flops = step.count_step_flops(runs[0].module, runs[0].real)
    table = {}
    for v in runs:
        rate = statistics.median(v.rates)
        table[v.name] = {"steps_per_s": rate, "images_per_s": rate * args.batch_size,
                         "tflops": flops * rate / 1e12, "mfu": flops * rate / peaks[v.peak], "peak": v.peak,
                         "all_rounds": v.rates}

    if n > 1:
        multi = multi_process(args, n, flops, peaks)
    elif cuda and gpus <= 1:
        multi = "1 GPU only: multi-process skipped"
    else:
        multi = f"multi-process skipped (--processes {n})" if cuda else \
            "CPU smoke test: multi-process skipped (--processes N runs it on N CPU processes)"

    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    sheet = datasheet(name) if cuda else None
    result = {
        "device": name, "smoke_test_on_cpu": not cuda, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": True, "batch_size": args.batch_size,
        "image_size": args.image_size, "width": args.width, "steps": args.steps, "warmup": args.warmup,
        "rounds": args.rounds, "compile_mode": args.compile_mode, "flops_per_step": flops,
        "peak_tflops_measured": {k: v / 1e12 for k, v in peaks.items()},
        "peak_tflops_datasheet": {"gpu": sheet[0], **sheet[1]} if sheet else None,
        "variants": table, "multi_process": multi,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{name}, torch {torch.__version__}: DCGAN {args.image_size}x{args.image_size}, widths {args.width}, "
        f"batch {args.batch_size}; {flops / 1e9:.2f} GFLOP per step; medians of {args.rounds} rounds")
    print(f"{'variant':<28} {'steps/s':>8} {'images/s':>9} {'TFLOP/s':>8} {'MFU':>6}  peak")
    for key, row in table.items():
        print(f"{key:<28} {row['steps_per_s']:8.2f} {row['images_per_s']:9.0f} {row['tflops']:8.2f} "
            f"{row['mfu']:6.1%}  {row['peak']} mm")
    print("torch.mm peak measured here (TFLOP/s): " + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in peaks.items()))
    if sheet:
        print(f"datasheet {sheet[0]} (NVIDIA, dense; a constant, not measured): "
            + ", ".join(f"{k} {v:g}" for k, v in sheet[1].items()))
    if isinstance(multi, str):
        print(multi)
    else:
        for precision, row in multi.items():
            one, many = row["1_processes"], row[f"{n}_processes"]
            print(f"Lightning {precision}: 1 process {one['images_per_s']:.0f} images/s (MFU {one['mfu']:.1%}), "
                f"{n} processes {many['images_per_s']:.0f} images/s (MFU per process {many['mfu']:.1%}), "
                f"scaling efficiency {row['scaling_efficiency']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
