"""Mode coverage of ring/grid: counts worked out by hand, the scaled threshold, the callback on ring."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from gan_lightning.callbacks.metrics import MetricsCallback
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.data.datasets import GRID_STD, RING_STD, grid_modes, ring_modes
from gan_lightning.metrics.mode_coverage import dataset_mode_coverage, min_samples_per_mode, mode_coverage


def at_modes(modes: torch.Tensor, counts: list[int], offset: float = 0.0) -> torch.Tensor:
    """counts[k] points at mode k, shifted right by ``offset``. Returns (sum(counts), 2)."""
    points = torch.cat([modes[k].expand(n, 2) for k, n in enumerate(counts)])
    return points + torch.tensor([offset, 0.0])


@pytest.mark.parametrize("n, threshold", [(2500, 20), (5000, 40), (500, 4), (100, 1), (10, 1)])
def test_threshold_is_pacgans_scaled_with_the_sample_count(n, threshold):
    assert min_samples_per_mode(n) == threshold


def test_points_on_every_mode_cover_all_of_them():
    ring = dataset_mode_coverage(at_modes(ring_modes(), [313] * 7 + [309]), "ring")
    assert ring == {"modes_covered": 8.0, "high_quality": 1.0, "num_modes": 8.0, "min_per_mode": 20.0}
    grid = dataset_mode_coverage(at_modes(grid_modes(), [100] * 25), "grid")
    assert grid["modes_covered"] == 25 and grid["high_quality"] == 1.0


def test_a_mode_needs_the_threshold_of_high_quality_points():
    # 2,500 points: threshold 20. Mode 0 gets 19 (not covered), mode 1 gets 20 (covered).
    points = at_modes(grid_modes(), [19, 20, 2461])
    result = dataset_mode_coverage(points, "grid")
    assert result["modes_covered"] == 2 and result["min_per_mode"] == 20
    assert mode_coverage(points, grid_modes(), GRID_STD, min_per_mode=19)["modes_covered"] == 3


def test_high_quality_means_within_three_standard_deviations():
    inside = at_modes(ring_modes(), [100] * 8, offset=2.9 * RING_STD)
    outside = at_modes(ring_modes(), [100] * 8, offset=3.1 * RING_STD)
    assert dataset_mode_coverage(inside, "ring")["high_quality"] == 1.0
    far = dataset_mode_coverage(outside, "ring")
    assert far["high_quality"] == 0.0 and far["modes_covered"] == 0
    mixed = dataset_mode_coverage(torch.cat([inside[:400], outside[400:]]), "ring")
    assert mixed["high_quality"] == 0.5 and mixed["modes_covered"] == 4  # the first 4 modes' 100 each


def test_collapse_on_the_centre_covers_nothing():
    result = dataset_mode_coverage(torch.zeros(2500, 2), "ring")  # 2 away from every mode
    assert result["modes_covered"] == 0 and result["high_quality"] == 0.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"points must be \(N, 2\)"):
        mode_coverage(torch.zeros(5, 3), ring_modes(), RING_STD)
    with pytest.raises(ValueError, match=r"points must be \(N, 2\)"):
        mode_coverage(torch.zeros(0, 2), ring_modes(), RING_STD)


def test_callback_logs_mode_coverage_for_ring(tmp_path):
    cfg = resolve(TrainConfig(dataset="ring", batch_size=64, z_dim=8, g_width=16, d_width=16))
    dm = build_datamodule(cfg)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg, dm.data_shape)
    metrics = MetricsCallback(every_n_epochs=1, num_samples=500, progress=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=3, log_every_n_steps=1,
                        logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[metrics])
    trainer.fit(module, datamodule=dm)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("modes_covered/500")]
    assert len(rows) == 2  # every epoch
    assert set(metrics.last_metrics) == {"modes_covered/500", "high_quality/500"}
    assert 0 <= metrics.last_metrics["modes_covered/500"] <= 8
    assert 0.0 <= metrics.last_metrics["high_quality/500"] <= 1.0
    assert float(rows[-1]["modes_covered/500"]) == metrics.last_metrics["modes_covered/500"]
