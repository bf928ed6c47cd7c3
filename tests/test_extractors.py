"""Feature extractors: the shipped digit classifier, torch-fidelity registration, finding weights offline,
weights files refused in words, and scripts/train_feature_extractor.py never touching the shipped file."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
from pathlib import Path

import pytest
import torch

from gan_lightning.metrics import extractors
from gan_lightning.runs.cli import run_cli
from gan_lightning.data.datasets import DATASETS
from gan_lightning.errors import UsageError
from gan_lightning.metrics.extractors import (
    EXTRACTORS, INCEPTION_SHA256, INCEPTION_URL, LENET_MNIST_SHA256, WEIGHTS_DIR, LeNetMNIST, data_warning,
    default_extractor, expected_shapes, file_sha256, hub_path, load_extractor, register_with_fidelity,
    resolve_weights, write_random_inception_weights,
)
from gan_lightning.images import to_uint8

SHIPPED = WEIGHTS_DIR / "lenet_mnist.pt"
ROOT = Path(__file__).resolve().parents[1]
EXPECTED = "expected the shipped lenet_mnist.pt or a file written by scripts/train_feature_extractor.py"


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def digits(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return DATASETS["mnist5k"].load(split, size, "data", False).tensors


@pytest.fixture(scope="module")
def lenet():
    return load_extractor("lenet-mnist")


@pytest.fixture(scope="session")
def random_inception(tmp_path_factory):
    """Randomly initialised Inception weights in a local file: checks plumbing, not numbers."""
    path = tmp_path_factory.getbasetemp() / "inception_random.pt"
    return path if path.is_file() else write_random_inception_weights(path)


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """An empty torch hub cache and a network that must not be touched."""
    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub"


# -- the shipped digit classifier -------------------------------------------------------------
def test_shipped_weights_are_small_and_match_the_recorded_sha256():
    assert SHIPPED.stat().st_size < 1_000_000
    assert file_sha256(SHIPPED) == hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == LENET_MNIST_SHA256


@pytest.mark.parametrize("size", [32, 28])
def test_digit_classifier_reaches_97_percent_on_held_out_digits(lenet, size):
    x, y = digits("test", size)
    logits = torch.cat([lenet(to_uint8(batch))["logits"] for batch in x.split(500)])  # (1000, 10)
    assert len(y) == 1000 and torch.bincount(y).tolist() == [100] * 10
    assert (logits.argmax(1) == y).float().mean() >= 0.97


def test_grey_and_rgb_inputs_give_the_same_features(lenet):
    pixels = to_uint8(digits("test", 28)[0][:8])  # (8, 1, 28, 28)
    grey, rgb = lenet(pixels), lenet(pixels.expand(-1, 3, -1, -1))
    assert grey["features"].shape == (8, 128) and grey["logits"].shape == (8, 10)
    torch.testing.assert_close(grey["features"], rgb["features"], rtol=1e-4, atol=1e-4)


def test_metric_features_have_unit_scale_on_training_digits(lenet):
    features = lenet(to_uint8(digits("train", 32)[0][:1000]))["features"]
    assert 0.8 < float(features.pow(2).mean().sqrt()) < 1.25  # feature_rms was measured on these


def test_registered_with_torch_fidelity_by_name():
    from torch_fidelity.utils import create_feature_extractor

    register_with_fidelity()
    register_with_fidelity()  # idempotent
    module = create_feature_extractor("lenet-mnist", ["features", "logits"], cuda=False, verbose=False)
    features, logits = module(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    assert features.shape == (2, 128) and logits.shape == (2, 10)
    assert module.get_default_feature_layer_for_metric("isc") == "logits"
    assert module.get_default_feature_layer_for_metric("fid") == "features"


# -- choosing and finding an extractor --------------------------------------------------------
def test_default_extractor_follows_the_data():
    assert [default_extractor(d) for d in ("mnist5k", "digits", "mnist")] == ["lenet-mnist"] * 3
    assert [default_extractor(d) for d in ("fashion_mnist", "cifar10", "celeba")] == ["inception"] * 3
    assert default_extractor("ring", "points") is None
    assert "not validated" in data_warning("lenet-mnist", "fashion_mnist")
    assert "inception" in data_warning("lenet-mnist", "fashion_mnist")
    assert "not validated" in data_warning("lenet-mnist", "digits")  # 8x8 digits: 34% accuracy
    assert data_warning("lenet-mnist", "mnist5k") is None and data_warning("inception", "mnist5k") is None


def test_unknown_extractor_lists_the_valid_ones():
    with pytest.raises(UsageError, match="unknown feature extractor 'vgg'; valid extractors are: inception, lenet"):
        load_extractor("vgg")


def test_missing_weights_path_is_one_line(tmp_path):
    with pytest.raises(UsageError, match=f"--metric_weights: no file at {tmp_path / 'x.pt'}"):
        load_extractor("lenet-mnist", tmp_path / "x.pt")


def _state(**changes) -> dict[str, torch.Tensor]:
    state = torch.load(SHIPPED, weights_only=True)
    state.update(changes)
    return state


class _Pickled:
    """Not a tensor: refused by weights_only=True, so its file is never unpickled."""


@pytest.mark.parametrize("write, says", [
    (lambda p: p.write_bytes(random.Random(0).randbytes(1000)), "is not a torch file, or a truncated one"),
    (lambda p: p.write_text("if only this were weights"), "is not a torch file"),  # once: "(105)"
    (lambda p: torch.save(_state(), p) or p.write_bytes(p.read_bytes()[:3000]), "or a truncated one"),
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p: torch.save(torch.nn.Linear(2, 3), p), "holds pickled Python objects"),
    (lambda p: torch.save(_Pickled(), p), "holds pickled Python objects"),
    (lambda p: torch.save([torch.zeros(3)], p), "holds a list, not a state_dict"),
    (lambda p: torch.save({"state_dict": _state(), "epoch": 3}, p), "is a training checkpoint"),
    (lambda p: torch.save({**_state(), "step": 3}, p), "entry 'step' is of type int, not a tensor"),
    (lambda p: torch.save({"weight": torch.zeros(3)}, p),
     "is a state_dict of another network: it has none of the 20 entries lenet-mnist needs (e.g. 'feature_rms') "
     "and has 1 entry lenet-mnist does not, e.g. 'weight'"),
    (lambda p: torch.save({k: v for k, v in _state().items() if k != "head.bias"}, p),
     "it lacks 1 of the 20 entries lenet-mnist needs, e.g. 'head.bias'"),
    (lambda p: torch.save(_state(**{"head.weight": torch.zeros(20, 128)}), p),
     "is a state_dict of another shape: entry 'head.weight' is (20, 128), lenet-mnist has (10, 128)"),
])
def test_files_that_are_not_lenet_weights_are_refused_in_words(tmp_path, write, says):
    path = tmp_path / "weights.pt"
    write(path)
    with pytest.raises(UsageError) as e:
        load_extractor("lenet-mnist", path)
    assert str(e.value).startswith(f"{path} ")
    assert says in str(e.value) and str(e.value).endswith(EXPECTED) and "\n" not in str(e.value)


def test_a_folder_given_as_weights_is_named_a_folder(tmp_path):
    with pytest.raises(UsageError, match=f"--metric_weights: {tmp_path} is a folder; give the lenet-mnist weights "
                                         "file \\(the shipped lenet_mnist.pt or a file written by"):
        load_extractor("lenet-mnist", tmp_path)


def test_expected_entries_are_those_of_the_networks():
    assert expected_shapes("lenet-mnist") == {k: tuple(v.shape) for k, v in LeNetMNIST().state_dict().items()}
    assert len(expected_shapes("lenet-mnist")) == 23  # 20 + 3 BatchNorm counters
    assert expected_shapes("inception")["fc.weight"] == (1008, 2048)


def test_state_dict_without_batchnorm_counters_still_loads(tmp_path):
    """Older files lack num_batches_tracked; BatchNorm fills it in, so they are not refused."""
    path = tmp_path / "old.pt"
    torch.save({k: v for k, v in _state().items() if not k.endswith("num_batches_tracked")}, path)
    assert load_extractor("lenet-mnist", path).sha256 == file_sha256(path)


def test_inception_offline_without_weights_says_what_to_do_without_the_network(empty_hub, monkeypatch):
    monkeypatch.setattr(extractors, "_reachable", lambda url, timeout=3.0: pytest.fail("network check"))
    with pytest.raises(UsageError, match="no inception weights.*--metric_weights PATH.*--metric_download"):
        load_extractor("inception")


def test_inception_download_opt_in_fails_fast_when_offline(empty_hub, monkeypatch):
    monkeypatch.setattr(extractors, "_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(UsageError, match="--metric_download: cannot reach github.com within 3 s"):
        resolve_weights("inception", download=True)


def test_inception_download_opt_in_fetches_into_the_hub_cache(empty_hub, monkeypatch, random_inception):
    fetched = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        fetched.append((url, hash_prefix))
        Path(dst).symlink_to(random_inception)

    monkeypatch.setattr(extractors, "_reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = resolve_weights("inception", download=True)
    assert path == hub_path(EXTRACTORS["inception"].url) and path.is_file()
    assert fetched == [(EXTRACTORS["inception"].url, "6726825d")]  # torch hub checks the sha256 prefix
    assert resolve_weights("inception", download=True) == path and len(fetched) == 1  # cached now


def test_inception_weights_in_the_hub_cache_are_found(empty_hub, random_inception):
    cached = hub_path(EXTRACTORS["inception"].url)
    assert cached.parent == empty_hub / "checkpoints"
    cached.parent.mkdir(parents=True)
    cached.symlink_to(random_inception)
    assert resolve_weights("inception") == cached


def test_reference_weights_are_recorded_in_the_table():
    assert EXTRACTORS["lenet-mnist"].sha256 == LENET_MNIST_SHA256
    assert EXTRACTORS["inception"].sha256 == INCEPTION_SHA256
    assert INCEPTION_SHA256.startswith(torch.hub.HASH_REGEX.search(hub_path(INCEPTION_URL).name).group(1))


def test_inception_plumbing_with_random_local_weights(random_inception):
    """Grey 28-px digits through Inception: repeated to RGB, resized to 299 (end to end: test_evaluate.py)."""
    inception = load_extractor("inception", random_inception)
    assert inception.sha256 == file_sha256(random_inception)
    out = inception(to_uint8(digits("test", 28)[0][:2]))  # (2, 1, 28, 28)
    assert out["2048"].shape == (2, 2048) and out["logits_unbiased"].shape == (2, 1008)
    assert all(torch.isfinite(v).all() for v in out.values())


# -- scripts/train_feature_extractor.py: where it writes ---------------------------------------
@pytest.fixture
def script(monkeypatch):
    """The script's module, with training replaced by a failure: every refusal must come before it."""
    spec = importlib.util.spec_from_file_location("train_feature_extractor", ROOT / "scripts" /
                                                  "train_feature_extractor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(module, "train", no_training)
    return module


def run_script(script, capsys, *argv) -> tuple[int, str, str]:
    code = run_cli(script.main, ["--epochs", "1", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def untrained(seed: int) -> LeNetMNIST:
    torch.manual_seed(seed)
    return LeNetMNIST().eval()


@pytest.mark.parametrize("spelling", ["absolute", "relative", "dotdot", "symlink", "symlinked_folder"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_script_refuses_the_shipped_file_by_any_spelling(script, capsys, monkeypatch, tmp_path, spelling, overwrite):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.pt").symlink_to(SHIPPED)
    (tmp_path / "weights").symlink_to(WEIGHTS_DIR, target_is_directory=True)
    out = {"absolute": SHIPPED, "relative": os.path.relpath(SHIPPED, tmp_path),
           "dotdot": WEIGHTS_DIR / ".." / "weights" / "lenet_mnist.pt", "symlink": "link.pt",
           "symlinked_folder": "weights/lenet_mnist.pt"}[spelling]
    before = fingerprint(SHIPPED)
    code, stdout, err = run_script(script, capsys, "--out", out, *(["--overwrite"] if overwrite else []))
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"error: --out {out} is the shipped lenet-mnist weights file") and "never overwritten" in err
    assert fingerprint(SHIPPED) == before == (LENET_MNIST_SHA256, before[1])


def test_script_needs_out(script, capsys):
    before = fingerprint(SHIPPED)
    code, _, err = run_script(script, capsys)
    assert code == 2 and err.startswith("error: --out is required") and err.count("\n") == 1
    assert fingerprint(SHIPPED) == before


def _under_a_file(folder: Path) -> Path:
    (folder / "notes.txt").write_text("x")
    return folder / "notes.txt" / "lenet.pt"


def _symlink_loop(folder: Path) -> Path:
    (folder / "loop").symlink_to(folder / "loop")
    return folder / "loop"


@pytest.mark.parametrize("make_out, says", [
    (lambda t: t, "is a folder; give a file name"),
    (_under_a_file, "notes.txt is a file, not a folder"),
    (lambda t: t / ("a" * 300 + ".pt"), "bytes long; this file system allows"),
    (_symlink_loop, "a symlink loop"),
])
def test_script_refuses_unwritable_outputs_before_training(script, capsys, monkeypatch, tmp_path, make_out, says):
    monkeypatch.chdir(tmp_path)
    out = make_out(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, _, err = run_script(script, capsys, "--out", out)
    assert code == 2 and err.count("\n") == 1 and says in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


def test_script_writes_only_where_told_and_overwrites_only_when_told(script, capsys, monkeypatch, tmp_path):
    out = tmp_path / "new" / "lenet.pt"
    monkeypatch.setattr(script, "train", lambda *args: untrained(1))
    code, stdout, err = run_script(script, capsys, "--out", out)
    assert code == 0, err
    sha256 = file_sha256(out)
    assert f"sha256         {sha256}" in stdout and f"fid/lenet-{sha256[:8]}_5k" in stdout
    assert load_extractor("lenet-mnist", out).sha256 == sha256 != LENET_MNIST_SHA256
    assert [p.name for p in out.parent.iterdir()] == ["lenet.pt"]  # no temporary file left

    first = fingerprint(out)
    monkeypatch.setattr(script, "train", lambda *args: pytest.fail("training started"))
    code, _, err = run_script(script, capsys, "--out", out)
    assert code == 2 and err.count("\n") == 1
    assert f"--out: {out} exists; choose another --out or pass --overwrite" in err
    assert fingerprint(out) == first

    monkeypatch.setattr(script, "train", lambda *args: untrained(2))
    code, _, err = run_script(script, capsys, "--out", out, "--overwrite")
    assert code == 0, err
    assert fingerprint(out)[0] != first[0] and [p.name for p in out.parent.iterdir()] == ["lenet.pt"]


def test_script_keeps_a_file_that_appeared_during_training_and_the_new_weights(script, capsys, monkeypatch,
                                                                              tmp_path):
    out = tmp_path / "lenet.pt"

    def train_while_someone_writes(*args):
        out.write_text("theirs")
        return untrained(1)

    monkeypatch.setattr(script, "train", train_while_someone_writes)
    code, _, err = run_script(script, capsys, "--out", out)
    assert code == 2 and err.count("\n") == 1 and "appeared during training and is kept" in err
    assert out.read_text() == "theirs"
    kept = Path(err.rsplit("the new weights are in ", 1)[1].strip())
    assert kept.parent == tmp_path and load_extractor("lenet-mnist", kept).sha256 == file_sha256(kept)
