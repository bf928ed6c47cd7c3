#!/usr/bin/env python
"""Does a change keep training bit for bit? Train the default run and a ring run with two checkouts
of this repository, one thread each, and compare every weight, optimizer state and metrics.csv row.

    git worktree add /tmp/base <commit>      # the checkout before the change
    python bench/bit_identical.py --before /tmp/base            # short runs (about 3 min)
    python bench/bit_identical.py --before /tmp/base --full     # the full default run (about 20 min)

Prints one line per run and per difference; exits 1 when anything differs. Columns that hold
wall-clock time (``time/``, ``*per_sec*``, ``*seconds*``) are left out of the row comparison.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RUNS = {  # name -> flags (short); the full default run drops --max_epochs
    "default": ("--max_epochs", "2"),
    "ring": ("--dataset", "ring", "--max_epochs", "3", "--remedy", "r1", "--g_ema", "0.999"),
}
TIMING = ("time/", "per_sec", "seconds", "throughput")


def train(repo: Path, out: Path, name: str, flags: tuple[str, ...]) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo), "WANDB_MODE": "offline"}
    cmd = [sys.executable, str(repo / "scripts" / "train.py"), "--logger", "csv", "--seed", "0",
           "--out_dir", str(out), "--run_name", name, *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out)
    (out / f"{name}.log").write_text(done.stdout + done.stderr)
    return done.returncode


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in csv.DictReader(f)]


def _flat(obj, prefix=""):
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}[{i}]")


def compare(a: Path, b: Path) -> list[str]:
    import torch

    diffs = []
    ra, rb = _rows(a / "metrics.csv"), _rows(b / "metrics.csv")
    if len(ra) != len(rb):
        diffs.append(f"metrics.csv: {len(ra)} rows before, {len(rb)} after")
    for i, (x, y) in enumerate(zip(ra, rb)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            diffs.append(f"metrics.csv row {i}: {', '.join(f'{k} {x.get(k)!r} -> {y.get(k)!r}' for k in keys[:4])}")
            break
    ca = torch.load(a / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    cb = torch.load(b / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for part in ("state_dict", "optimizer_states"):
        ta, tb = dict(_flat(ca.get(part))), dict(_flat(cb.get(part)))
        if set(ta) != set(tb):
            diffs.append(f"{part}: keys differ ({sorted(set(ta) ^ set(tb))[:3]})")
        for k in sorted(set(ta) & set(tb)):
            if ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k]):
                diffs.append(f"{part}{k}: differs")
                break
    return diffs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="checkout of the repository before the change")
    p.add_argument("--after", default=str(HERE), help="checkout after the change (default: this one)")
    p.add_argument("--out", default="/tmp/bit_identical", help="folder for the four runs")
    p.add_argument("--full", action="store_true", help="the full default run (20 epochs) instead of 2 epochs")
    args = p.parse_args()
    out = Path(args.out)
    jobs = []
    for side, repo in (("before", Path(args.before)), ("after", Path(args.after))):
        (out / side).mkdir(parents=True, exist_ok=True)
        for name, flags in RUNS.items():
            flags = () if (args.full and name == "default") else flags
            jobs.append((side, repo, name, flags))
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda j: train(j[1].resolve(), out / j[0], j[2], j[3]), jobs))
    failed = 0
    for (side, _, name, _), code in zip(jobs, codes):
        if code != 0:
            print(f"{side}/{name}: exit {code}, see {out / side / (name + '.log')}")
            failed = 1
    if failed:
        return 1
    for name in RUNS:
        diffs = compare(out / "before" / name, out / "after" / name)
        print(f"{name}: " + ("bit-identical (weights, optimizer states, metrics.csv rows)" if not diffs else
                             f"{len(diffs)} difference(s)"))
        for d in diffs:
            print("  " + d)
        failed |= bool(diffs)
    return failed


if __name__ == "__main__":
    sys.exit(main())
