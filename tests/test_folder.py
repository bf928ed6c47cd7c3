"""runs/folder.py: a run folder's config, rows and a metric's series, its last checkpoint, and load()."""

from __future__ import annotations

import pytest
import torch
import yaml

from gan_lightning.config import config_from_dict, resolve
from gan_lightning.config.flags import SHAPE_KEYS
from gan_lightning.errors import UsageError
from gan_lightning.runs import folder
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main as train_main
from script_harness import RING


def test_config_rows_and_series_of_a_hand_written_folder(tmp_path):
    (tmp_path / "config.yaml").write_text("dataset: ring\nseed: 3\n")
    (tmp_path / "metrics.csv").write_text("step,loss/d,d/acc\n0,1.5,\n1,,0.75\n2,0.25,0.5\n")
    assert folder.config(tmp_path) == {"dataset": "ring", "seed": 3}
    assert [r["step"] for r in folder.rows(tmp_path)] == ["0", "1", "2"]
    assert folder.series(tmp_path, "loss/d") == [1.5, 0.25]  # the row without it is skipped
    assert folder.series(tmp_path, "d/acc") == [0.75, 0.5]
    assert folder.series(tmp_path, "never") == []
    assert folder.series(tmp_path / "empty", "loss/d") == []  # no metrics.csv yet


@pytest.mark.parametrize("text, why", [("a: [1,\n", "is not YAML text"), ("- 1\n- 2\n", "holds no mapping")])
def test_a_bad_config_yaml_is_one_line_naming_the_folder(tmp_path, text, why):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(UsageError, match=why) as e:
        folder.config(tmp_path)
    assert str(e.value).startswith(f"{tmp_path}: config.yaml") and "\n" not in str(e.value)
    assert folder.config(tmp_path / "nowhere") == {}


def test_find_last_names_the_run_or_the_newest(tmp_path):
    with pytest.raises(UsageError, match="no run under"):
        folder.find_last(tmp_path)
    for name in ("a", "b"):
        folder.last_checkpoint(tmp_path / name).parent.mkdir(parents=True)
        folder.last_checkpoint(tmp_path / name).write_bytes(b"x")
    assert folder.find_last(tmp_path, "a") == tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(UsageError, match="check --run_name"):
        folder.find_last(tmp_path, "c")


def test_load_gives_the_stored_config_resolved_and_the_saved_weights(tmp_path):
    runs = tmp_path / "runs"
    assert run_cli(train_main, [*RING, "--max_steps", "3", "--out_dir", str(runs), "--run_name", "A"]) == 0
    ckpt = folder.find_last(runs, "A")
    loaded = folder.load(ckpt)
    assert loaded.cfg == resolve(config_from_dict({**folder.config(runs / "A"), "resume": "", "config": ""}))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert loaded.notes == [] and int(loaded.module.g_steps) == 3


def test_the_shape_keys_hold_every_layer_that_sizes_a_network():
    assert {"minibatch_discrimination", "mbd_kernels", "mbd_dim", "g_norm", "vbn_ref_size"} <= set(SHAPE_KEYS)
