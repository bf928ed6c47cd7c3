"""bench/gpu.py without a GPU: the CPU smoke mode's JSON report, and one line with exit code 2 otherwise."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--warmup", "1", "--rounds", "1", "--batch_size", "4", "--image_size", "32", "--width", "8"]


def gpu_py(*args: str) -> subprocess.CompletedProcess:
    # No GPU visible, even on a GPU machine: the test is about the script's CPU behaviour.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cpu_smoke_mode_reports_every_variant_as_json():
    proc = gpu_py("--allow_cpu", *TINY, "--variants", "fp32,bf16+channels_last", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert {"device", "smoke_test_on_cpu", "torch", "batch_size", "image_size", "flops_per_step",
            "peak_tflops_measured", "peak_tflops_datasheet", "variants", "multi_process"} <= set(report)
    assert report["device"] == "cpu" and report["smoke_test_on_cpu"] is True
    assert report["peak_tflops_datasheet"] is None  # constants are for known GPUs only
    assert "multi-process skipped" in report["multi_process"]
    assert set(report["peak_tflops_measured"]) == {"fp32", "bf16"}
    assert list(report["variants"]) == ["fp32", "bf16+channels_last"]
    flops = report["flops_per_step"]
    assert flops > 1e6
    for name, row in report["variants"].items():
        assert row["peak"] == ("bf16" if name.startswith("bf16") else "fp32")
        assert row["steps_per_s"] > 0 and len(row["all_rounds"]) == 1
        assert row["images_per_s"] == row["steps_per_s"] * 4
        peak = report["peak_tflops_measured"][row["peak"]] * 1e12
        assert abs(row["mfu"] - flops * row["steps_per_s"] / peak) <= 1e-9 * row["mfu"]


def test_without_a_gpu_it_says_so_in_one_line_and_exits_2():
    proc = gpu_py(*TINY)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA GPU") and "--allow_cpu" in lines[0], lines


def test_an_unknown_variant_is_one_line_and_exit_2():
    proc = gpu_py("--allow_cpu", "--variants", "fp32,fp16")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --variants: 'fp16' is not a + of fp32, bf16, channels_last, compile "
                                   "(fp32 and bf16 exclude each other)")


def gpu_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_gpu_check_records_each_stage_and_names_the_failed_ones(tmp_path):
    """A passing stage and a failing one (evaluate without the fp32 run's checkpoint): exit 1, both recorded."""
    proc = gpu_check(tmp_path, "--allow_cpu", "--quick", "--only", "packages,evaluate")
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["packages"]["status"] == "ok" and report["packages"]["torch_fidelity"]
    assert report["evaluate"]["status"] == "FAILED" and "no checkpoint of train_fp32" in report["evaluate"]["error"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| packages | ok |" in table and "| evaluate | FAILED |" in table
    assert "failed: evaluate: no checkpoint of train_fp32" in proc.stderr


def test_gpu_check_without_a_gpu_or_with_an_unknown_stage_says_so(tmp_path):
    proc = gpu_check(tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: no CUDA GPU here (--allow_cpu runs the stages on the CPU as a smoke test)"]
    proc = gpu_check(tmp_path, "--allow_cpu", "--only", "packages,warp")
    assert proc.returncode == 2 and "unknown stage 'warp'" in proc.stderr
