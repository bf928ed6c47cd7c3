"""What a resumed run logs: metrics.csv without the rows an interrupted session logged after its
checkpoint, and D's accuracy pooled over a window that a checkpoint cut in two.

The end-to-end checks (a stopped and resumed run writes the rows of one run) are in
test_reliability.py; these pin down the two pieces.
"""

import csv
from pathlib import Path
from types import SimpleNamespace

import torch

from gan_lightning.callbacks.accuracy import DiscriminatorAccuracy, _stats_from_sums, discriminator_stats
from gan_lightning.trainer.loggers import AppendingCSVLogger


def read_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_csv_logger_drops_the_rows_logged_after_the_checkpoint(tmp_path):
    first = AppendingCSVLogger(tmp_path)
    for step in (4, 9, 14, 19):
        first.log_metrics({"loss/d": float(step)}, step=step)
    first.save()
    # Resumed from a checkpoint whose next batch is logged at step 10: rows 14 and 19 were
    # logged by the interrupted session after it and will be logged again.
    second = AppendingCSVLogger(tmp_path)
    second.drop_rows_from(10)
    assert [r["step"] for r in read_rows(tmp_path)] == ["4", "9"]
    second.log_metrics({"loss/d": -14.0, "d/acc": 0.5}, step=14)
    second.save()
    got = [(r["step"], r["loss/d"], r["d/acc"]) for r in read_rows(tmp_path)]
    assert got == [("4", "4.0", ""), ("9", "9.0", ""), ("14", "-14.0", "0.5")]
    assert not list(tmp_path.glob("*.tmp*"))


def test_resumed_csv_logger_keeps_every_row_before_the_checkpoint(tmp_path):
    first = AppendingCSVLogger(tmp_path)
    first.log_metrics({"loss/d": 1.0}, step=4)
    first.save()
    before = (tmp_path / "metrics.csv").read_bytes()
    AppendingCSVLogger(tmp_path).drop_rows_from(5)
    assert (tmp_path / "metrics.csv").read_bytes() == before


def test_accuracy_window_cut_by_a_checkpoint_pools_both_parts():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, generator=g), torch.randn(8, generator=g) - 1) for _ in range(5)]
    module = SimpleNamespace(device=torch.device("cpu"))

    before = DiscriminatorAccuracy(every_n_steps=5)
    before.on_train_start(SimpleNamespace(global_rank=0, world_size=1), module)
    for real, fake in batches[:3]:  # the checkpoint comes after batch 3 of the window's 5
        before._pooled.update(real, fake)
    saved = before.state_dict()

    def resumed(rank: int, world_size: int = 1) -> DiscriminatorAccuracy:
        callback = DiscriminatorAccuracy(every_n_steps=5)
        callback.load_state_dict(saved)
        callback.on_train_start(SimpleNamespace(global_rank=rank, world_size=world_size), module)
        return callback

    after = resumed(0)
    for real, fake in batches[3:]:
        after._pooled.update(real, fake)
    sums = after._pooled.compute()
    assert float(sums[3]) == float(sums[7]) == 40  # real and fake examples: 5 batches of 8
    got = _stats_from_sums(sums)
    expected = discriminator_stats(torch.cat([r for r, _ in batches]), torch.cat([f for _, f in batches]))
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, msg=key)
    # Resumed on 2 processes, rank 0 takes back what the one rank had (once), rank 1 starts at 0.
    torch.testing.assert_close(resumed(0, world_size=2)._pooled.sums, saved["sums_per_rank"][0])
    assert not resumed(1, world_size=2)._pooled.sums.any()
