"""Throughput flags on the CPU: bf16-mixed trains every task, --channels_last and --compile train the
same networks to the same numbers and write the same checkpoints as an eager contiguous run."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from gan_lightning.build import build_module
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.config.resolve import uses_cuda
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

QUIET = ["--logger", "csv", "--metric_every_n_epochs", "0", "--sample_every_n_epochs", "0", "--log_every_n_steps", "1"]
TASKS = {
    "gan-images": ["--dataset", "digits", "--image_size", "28", "--g_width", "8", "--d_width", "8", "--batch_size", "32"],
    "gan-points": ["--dataset", "ring", "--g_width", "16", "--d_width", "16", "--batch_size", "64"],
    "semi_supervised": ["--task", "semi_supervised", "--dataset", "digits", "--arch", "improved_mnist",
                        "--image_size", "28", "--batch_size", "32", "--labels_per_class", "5"],
}


def run(tmp_path: Path, name: str, *flags: str) -> list[dict[str, str]]:
    assert run_cli(main, [*flags, *QUIET, "--out_dir", str(tmp_path), "--run_name", name]) == 0
    return list(csv.DictReader((tmp_path / name / "metrics.csv").open()))


def losses(rows: list[dict[str, str]]) -> list[tuple[float, float]]:
    return [(float(r["loss/d"]), float(r["loss/g"])) for r in rows if r.get("loss/d")]


def weights(tmp_path: Path, name: str) -> dict[str, torch.Tensor]:
    ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}


def close_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], lr: float = 2e-4) -> bool:
    """Equal up to one Adam step (lr): Adam divides by sqrt(v), so a last-bit difference in a near-zero
    gradient can move a weight by up to lr, while a wrong layout moves them by the weights' own size."""
    return all(torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=lr) for k in a)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_bf16_mixed_trains_every_task_on_the_cpu(tmp_path, task):
    rows = run(tmp_path, task, *TASKS[task], "--precision", "bf16-mixed", "--max_steps", "3")
    values = losses(rows)
    assert len(values) == 3 and all(math.isfinite(v) for pair in values for v in pair)


def test_channels_last_trains_the_same_numbers(tmp_path):
    flags = [*TASKS["gan-images"], "--max_steps", "3", "--diagnostics", "false"]
    module = build_module(resolve(TrainConfig(**{"dataset": "digits", "image_size": 28, "g_width": 8, "d_width": 8,
                                                 "channels_last": True})), (1, 28, 28))
    convs = [p for p in module.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    plain, last = losses(run(tmp_path, "plain", *flags)), losses(run(tmp_path, "last", *flags, "--channels_last"))
    assert len(plain) == len(last) == 3
    assert torch.allclose(torch.tensor(last), torch.tensor(plain), rtol=1e-4, atol=1e-5)
    a, b = weights(tmp_path, "plain"), weights(tmp_path, "last")
    assert a.keys() == b.keys() and close_weights(a, b)


def test_channels_last_is_refused_for_points(capsys):
    assert run_cli(main, ["--dataset", "ring", "--channels_last", "--dry_run"]) == 2
    assert "--channels_last is a memory format of images" in capsys.readouterr().err


def test_compile_trains_the_same_numbers_and_checkpoints(tmp_path):
    module = build_module(resolve(TrainConfig(dataset="ring", compile=True)), (2,))
    children = [*module.generator.children(), *module.discriminator.children()]
    assert children and all(getattr(c, "_compiled_call_impl", None) is not None for c in children)
    flags = [*TASKS["gan-points"], "--max_steps", "2", "--diagnostics", "false"]
    eager, compiled = losses(run(tmp_path, "eager", *flags)), losses(run(tmp_path, "compiled", *flags, "--compile"))
    assert len(eager) == len(compiled) == 2
    assert torch.allclose(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=1e-5)
    a, b = weights(tmp_path, "eager"), weights(tmp_path, "compiled")
    assert a.keys() == b.keys()  # compiled in place: the same parameter names, the same checkpoint layout
    assert close_weights(a, b)


@pytest.mark.parametrize("accelerator, expected", [("gpu", True), ("cuda", True), ("cpu", False),
                                                   ("auto", torch.cuda.is_available())])
def test_cudnn_benchmark_is_on_for_gpu_runs(accelerator, expected):
    assert uses_cuda(TrainConfig(accelerator=accelerator)) is expected
