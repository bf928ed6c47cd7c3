"""Feature extractors: the shipped digit classifier, torch-fidelity registration, finding weights offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from gan_lightning import extractors
from gan_lightning.data import DATASETS
from gan_lightning.errors import UsageError
from gan_lightning.extractors import (
    EXTRACTORS, LENET_MNIST_SHA256, WEIGHTS_DIR, data_warning, default_extractor, file_sha256, hub_path,
    load_extractor, register_with_fidelity, resolve_weights, write_random_inception_weights,
)
from gan_lightning.images import to_uint8

SHIPPED = WEIGHTS_DIR / "lenet_mnist.pt"


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


def test_files_that_are_not_weights_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a tensor file")
    with pytest.raises(UsageError, match="is not a lenet-mnist weights file"):
        load_extractor("lenet-mnist", text)
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(UsageError, match="does not fit the lenet-mnist extractor"):
        load_extractor("lenet-mnist", other)


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


def test_inception_plumbing_with_random_local_weights(random_inception):
    """Grey 28-px digits through Inception: repeated to RGB, resized to 299 (end to end: test_evaluate.py)."""
    inception = load_extractor("inception", random_inception)
    assert inception.sha256 == file_sha256(random_inception)
    out = inception(to_uint8(digits("test", 28)[0][:2]))  # (2, 1, 28, 28)
    assert out["2048"].shape == (2, 2048) and out["logits_unbiased"].shape == (2, 1008)
    assert all(torch.isfinite(v).all() for v in out.values())
