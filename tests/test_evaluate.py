"""scripts/evaluate.py: JSON and table reports, cached real statistics, points, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_lightning.runs.cli import run_cli
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.build import build_module
from gan_lightning.data.datasets import DATASETS, data_shape
from gan_lightning.metrics.extractors import LENET_MNIST_SHA256, WEIGHTS_DIR, file_sha256, write_random_inception_weights

ROOT = Path(__file__).resolve().parents[1]
JSON_KEYS = {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "extractor",
             "extractor_sha256", "num_samples", "real_stats_cached", "seconds"}


def _script_main():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


main = _script_main()


def checkpoint(tmp_path: Path, **options) -> Path:
    """What training writes, minus optimizer state: weights plus the run's config."""
    cfg = resolve(TrainConfig(**{"dataset": "mnist5k", "image_size": 28, "z_dim": 16, "g_width": 8, "d_width": 8,
                                 **options}))
    torch.manual_seed(0)
    module = build_module(cfg, data_shape(DATASETS[cfg.dataset], cfg.image_size))
    path = tmp_path / f"{cfg.dataset}.ckpt"
    torch.save({"state_dict": module.state_dict(), "gan_lightning": {"version": "0.1.0", "config": cfg.to_dict()}},
               path)
    return path


def evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_cli(main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def random_inception(tmp_path_factory):
    """Randomly initialised Inception weights in a local file: checks plumbing, not numbers."""
    path = tmp_path_factory.getbasetemp() / "inception_random.pt"
    return path if path.is_file() else write_random_inception_weights(path)


def test_json_report_and_cached_second_run(tmp_path, capsys):
    ckpt = checkpoint(tmp_path)
    args = [ckpt, "--json", "--num_samples", 300, "--kid_subset_size", 250, "--cache_dir", tmp_path / "c",
            "--device", "cpu"]
    code, out, _ = evaluate(capsys, *args)
    assert code == 0
    first = json.loads(out)
    assert JSON_KEYS <= set(first)
    assert first["extractor"] == "lenet-mnist" and first["extractor_sha256"] == LENET_MNIST_SHA256
    assert first["num_samples"] == 300 and first["real_stats_cached"] is False
    assert first["fid"] > 0 and 1.0 <= first["is_mean"] <= 10.0

    code, out, _ = evaluate(capsys, *args)
    second = json.loads(out)
    assert code == 0 and second["real_stats_cached"] is True
    for key in ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"):
        assert second[key] == first[key], key  # same latents (seed 0), same real statistics


def test_table_uses_the_logged_names(tmp_path, capsys):
    code, out, _ = evaluate(capsys, checkpoint(tmp_path), "--num_samples", 300, "--metrics", "fid,is",
                            "--cache_dir", tmp_path / "c")
    assert code == 0
    labels = [line.split()[0] for line in out.splitlines()]
    assert {"fid/lenet_300", "is_mean/lenet_300", "is_std/lenet_300", "real_stats_cached"} <= set(labels)
    assert "kid_mean/lenet_300" not in labels


def test_points_checkpoint_reports_mode_coverage(tmp_path, capsys):
    code, out, _ = evaluate(capsys, checkpoint(tmp_path, dataset="ring", arch="mlp"), "--json")
    report = json.loads(out)
    assert code == 0 and report["num_samples"] == 2500 and report["num_modes"] == 8 and report["min_per_mode"] == 20
    assert 0 <= report["modes_covered"] <= 8 and 0.0 <= report["high_quality"] <= 1.0


def test_inception_with_random_local_weights(tmp_path, capsys, random_inception):
    code, out, err = evaluate(capsys, checkpoint(tmp_path), "--json", "--extractor", "inception", "--metric_weights",
                              random_inception, "--num_samples", 4, "--num_real", 4, "--kid_subset_size", 4,
                              "--metrics", "fid,kid,pr", "--cache_dir", tmp_path / "c")
    assert code == 0, err
    report = json.loads(out)
    assert report["extractor"] == "inception" and report["num_real"] == 4
    assert {"fid", "kid_mean", "precision"} <= set(report) and "is_mean" not in report
    mark = file_sha256(random_inception)[:8]  # random weights are not torch-fidelity's: never plain "inception"
    assert report["names"] == {"fid": f"fid/inception-{mark}_4", "kid_mean": f"kid_mean/inception-{mark}_4",
                               "kid_std": f"kid_std/inception-{mark}_4", "precision": f"precision/inception-{mark}_4",
                               "recall": f"recall/inception-{mark}_4"}


def test_other_lenet_weights_give_marked_names(tmp_path, capsys):
    state = torch.load(WEIGHTS_DIR / "lenet_mnist.pt", weights_only=True)
    state["head.bias"] += 1.0  # a retrained file, as far as names go
    weights = tmp_path / "lenet_retrained.pt"
    torch.save(state, weights)
    args = [checkpoint(tmp_path), "--num_samples", 300, "--metrics", "fid,is", "--cache_dir", tmp_path / "c"]
    code, out, err = evaluate(capsys, *args, "--metric_weights", weights)
    assert code == 0, err
    labels = {line.split()[0] for line in out.splitlines()}
    mark = file_sha256(weights)[:8]
    assert {f"fid/lenet-{mark}_300", f"is_mean/lenet-{mark}_300"} <= labels and "fid/lenet_300" not in labels

    code, out, err = evaluate(capsys, *args, "--json", "--metric_weights", WEIGHTS_DIR / "lenet_mnist.pt")
    assert code == 0, err
    assert json.loads(out)["names"]["fid"] == "fid/lenet_300"  # the shipped file, named explicitly: plain


def test_kid_on_a_small_reference_split_names_the_split_as_the_limit(tmp_path, capsys):
    """sklearn digits: 359 test images; raising --num_samples cannot help, lowering --kid_subset_size can."""
    code, out, err = evaluate(capsys, checkpoint(tmp_path, dataset="digits"), "--cache_dir", tmp_path / "c")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err == ("error: kid needs at least 1000 generated and real samples (--kid_subset_size=1000), got 359 real "
                   "images, all of the digits test split; lower --kid_subset_size to <= 359 or leave kid out of "
                   "--metrics\n")


def _folder(tmp_path: Path) -> Path:
    return tmp_path


def _random_bytes(tmp_path: Path) -> Path:
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 4)
    return tmp_path / "random.pt"


def _other_network(tmp_path: Path) -> Path:
    torch.save(torch.nn.Linear(128, 10).state_dict(), tmp_path / "linear.pt")
    return tmp_path / "linear.pt"


@pytest.mark.parametrize("make_weights, says", [
    (_folder, "is a folder; give the lenet-mnist weights file (the shipped lenet_mnist.pt or a file written by "
              "scripts/train_feature_extractor.py)"),
    (_random_bytes, "random.pt is not a torch file, or a truncated one (torch.load cannot read it); expected the "
                    "shipped lenet_mnist.pt or a file written by scripts/train_feature_extractor.py"),
    (_other_network, "linear.pt is a state_dict of another network: it has none of the 20 entries lenet-mnist needs "
                     "(e.g. 'feature_rms') and has 2 entries lenet-mnist does not, e.g. 'weight'; expected the "
                     "shipped lenet_mnist.pt or a file written by scripts/train_feature_extractor.py"),
])
def test_wrong_metric_weights_say_what_is_wrong_in_one_line(tmp_path, capsys, make_weights, says):
    folder = tmp_path / "weights"
    folder.mkdir()
    code, out, err = evaluate(capsys, checkpoint(tmp_path), "--metric_weights", make_weights(folder),
                              "--cache_dir", tmp_path / "c")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ") and says in err


@pytest.mark.parametrize("make_args, message", [
    (lambda t, c: [t / "missing.ckpt"], "no checkpoint file at"),
    (lambda t, c: [c, "--extractor", "vgg"], "unknown feature extractor 'vgg'; valid extractors are"),
    (lambda t, c: [c, "--metric_weights", t / "nope.pt"], "--metric_weights: no file at"),
    (lambda t, c: [c, "--num_samples", 500], "kid needs at least 1000 generated and real samples"),
    (lambda t, c: [c, "--metrics", "fid,ssim"], "unknown metric 'ssim'"),
    (lambda t, c: [c, "--num_samples", "many"], "argument --num_samples: invalid int value"),
    (lambda t, c: [c, "--split", "val"], "unknown split 'val'"),
    (lambda t, c: [c, "--batch_size", 0], "--batch_size: must be >= 1, got 0"),
    (lambda t, c: [c, "--num_samples", 10**20], "--num_samples: must be <= 1,000,000"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, make_args, message):
    code, out, err = evaluate(capsys, *make_args(tmp_path, checkpoint(tmp_path)), "--cache_dir", tmp_path / "c")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_files_that_are_not_checkpoints_of_this_project(tmp_path, capsys):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    for path, message in ((text, "is not a readable checkpoint"), (foreign, "is not a gan_lightning checkpoint")):
        code, _, err = evaluate(capsys, path)
        assert code == 2 and err.count("\n") == 1 and message in err


def test_script_in_a_subprocess_exits_2_with_one_line(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(text)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "is not a readable checkpoint" in proc.stderr


def test_a_run_folder_is_scored_on_its_last_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint(tmp_path, dataset="ring", arch="mlp").rename(run / "checkpoints" / "last.ckpt")
    code, out, err = evaluate(capsys, run)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["checkpoint", str(run / "checkpoints" / "last.ckpt")]


@pytest.mark.parametrize("layout, says", [
    ({"config.yaml": "seed: 0\n"}, "run is a run folder without checkpoints (it stopped before its first one)"),
    ({"checkpoints/epoch=0.ckpt": "x"}, "run is a run folder without checkpoints/last.ckpt; pass one of its "
                                        "checkpoints: {run}/checkpoints/epoch=0.ckpt"),
    ({"notes.txt": "x"}, "run is a folder, not a checkpoint; pass a .ckpt file, or a run folder"),
])
def test_a_folder_without_last_ckpt_is_one_line(tmp_path, capsys, layout, says):
    run = tmp_path / "run"
    for name, text in layout.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    code, out, err = evaluate(capsys, run)
    assert code == 2 and out == "" and err.count("\n") == 1 and says.format(run=run) in err, err



def test_a_checkpoint_scores_what_training_logged(tmp_path, capsys):
    """scripts/evaluate.py and MetricsCallback share one scorer: the same G, latents and settings give the
    values training logged at its end."""
    import csv

    from gan_lightning.runs.training import main as train_main

    args = ["--dataset", "digits", "--image_size", "32", "--z_dim", "8", "--g_width", "4", "--d_width", "4",
            "--batch_size", "16", "--max_steps", "3", "--metric_every_n_epochs", "1", "--metric_num_samples", "200",
            "--metrics", "fid,is", "--logger", "csv", "--diagnostics", "false", "--out_dir", str(tmp_path),
            "--run_name", "digits"]
    assert run_cli(train_main, args) == 0, capsys.readouterr().err
    with (tmp_path / "digits" / "metrics.csv").open(newline="") as f:
        logged = [row for row in csv.DictReader(f) if row.get("fid/lenet_200")][-1]
    code, out, err = evaluate(capsys, tmp_path / "digits", "--json", "--num_samples", 200, "--metrics", "fid,is")
    assert code == 0, err
    report = json.loads(out)
    assert report["names"] == {"fid": "fid/lenet_200", "is_mean": "is_mean/lenet_200", "is_std": "is_std/lenet_200"}
    assert report["fid"] > 1  # G after 3 steps is far from the digits
    for key, name in report["names"].items():
        assert report[key] == pytest.approx(float(logged[name]), rel=1e-6), name
