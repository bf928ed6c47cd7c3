"""FID/KID/IS/PR: names, cache keys, equality with torch-fidelity, caching, MetricsCallback in a Trainer."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import Dataset

from gan_lightning.callbacks.metrics import MetricsCallback, gather_rows
from gan_lightning.metrics.keys import metric_keys as logged_keys
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.data.datasets import DATASETS
from gan_lightning.errors import UsageError
from gan_lightning.metrics.extractors import INCEPTION_SHA256, LENET_MNIST_SHA256, WEIGHTS_DIR, file_sha256, load_extractor
from gan_lightning.images import to_uint8
from gan_lightning.metrics.fidelity import CACHE_ENV, FidelityMetrics, Reference, cache_dir, latents, real_stats_key, shard
from gan_lightning.metrics.keys import count_label, metric_key, parse_metrics

LENET_KEYS = ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall", "density", "coverage")


def digits(split: str, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    return DATASETS["mnist5k"].load(split, size, "data", False).tensors


def noisy_digits(n: int = 500, sigma: float = 0.3) -> torch.Tensor:
    """Train digits with noise: like the reference, but measurably not the same images."""
    x = digits("train")[0][:n]
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)


@pytest.fixture(scope="module")
def lenet():
    return load_extractor("lenet-mnist")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """Real features of the mnist5k test split, extracted once for the tests that do not check caching."""
    return tmp_path_factory.mktemp("cache")


def fidelity(lenet, cache: Path, num_real: int = 0, dataset: str = "mnist5k", **kwargs) -> FidelityMetrics:
    kwargs.setdefault("kid_subset_size", 500)
    return FidelityMetrics(Reference(dataset, "test", 32, num_real), lenet, cache=cache, **kwargs)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> Path:
    """LeNet weights other than the shipped ones: same shapes, different numbers (a stand-in for a retrained file)."""
    state = torch.load(WEIGHTS_DIR / "lenet_mnist.pt", weights_only=True)
    state["head.bias"] += 1.0
    state["body.4.weight"] *= 1.1
    path = tmp_path_factory.mktemp("weights") / "lenet_retrained.pt"
    torch.save(state, path)
    return path


# -- names and keys ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, label", [(500, "500"), (1000, "1k"), (2500, "2.5k"), (5000, "5k"), (50000, "50k"),
                                      (1234, "1.234k"), (10, "10")])
def test_count_labels(n, label):
    assert count_label(n) == label


def test_metric_keys_say_how_they_were_measured():
    assert metric_key("fid", 5000, "lenet") == "fid/lenet_5k"
    assert metric_key("kid_std", 50000, "inception") == "kid_std/inception_50k"
    assert metric_key("modes_covered", 2500) == "modes_covered/2.5k"


def test_metric_keys_name_the_weights_unless_they_are_the_reference_ones():
    other = "1a2b3c4d" + "e" * 56
    assert metric_key("fid", 5000, "lenet", LENET_MNIST_SHA256) == "fid/lenet_5k"  # the shipped file
    assert metric_key("fid", 5000, "lenet", other) == "fid/lenet-1a2b3c4d_5k"
    assert metric_key("fid", 5000, "lenet", other.upper()) == "fid/lenet-1a2b3c4d_5k"
    assert metric_key("is_mean", 1000, "inception", INCEPTION_SHA256) == "is_mean/inception_1k"  # torch-fidelity's
    assert metric_key("is_mean", 1000, "inception", other) == "is_mean/inception-1a2b3c4d_1k"
    assert metric_key("fid", 5000, "lenet", INCEPTION_SHA256) == f"fid/lenet-{INCEPTION_SHA256[:8]}_5k"
    assert metric_key("modes_covered", 2500, "", other) == "modes_covered/2.5k"  # no extractor, no weights


def test_logged_keys_follow_the_weights_file(retrained, tmp_path):
    assert logged_keys("mnist5k", metrics="fid", weights_path=str(WEIGHTS_DIR / "lenet_mnist.pt")) == {"fid/lenet_5k"}
    mark = file_sha256(retrained)[:8]
    assert logged_keys("mnist5k", metrics="fid", weights_path=str(retrained)) == {f"fid/lenet-{mark}_5k"}
    assert logged_keys("mnist5k", weights_path=str(tmp_path / "missing.pt")) == set()  # metrics off


def test_logged_keys_follow_data_extractor_and_counts():
    assert logged_keys("mnist5k") == {f"{v}/lenet_5k" for v in LENET_KEYS}
    assert logged_keys("cifar10", 50000, metrics="fid") == {"fid/inception_50k"}
    assert logged_keys("mnist5k", 500, metrics="fid,kid") == {"fid/lenet_500"}  # KID needs 1,000
    assert logged_keys("grid") == {"modes_covered/2.5k", "high_quality/2.5k"}


@pytest.mark.parametrize("dataset", ["mnist5k", "digits", "cifar10", "folder", "ring"])
def test_metric_autos_have_one_answer(dataset):
    from gan_lightning.config import resolve
    from gan_lightning.metrics.keys import metric_settings

    kind, extractor, num_samples, split = metric_settings(dataset)
    cfg = resolve(TrainConfig(dataset=dataset))  # what a run logs under
    assert (cfg.metric_extractor, cfg.metric_num_samples, cfg.metric_split) == (extractor or "none", num_samples, split)
    assert (kind == "points") == (extractor is None) == (dataset == "ring")
    assert metric_settings(dataset, "inception", 700, "train")[1:] == ("inception", 700, "train")  # given: kept


def test_callback_arguments_are_checked():
    with pytest.raises(UsageError, match="every_n_epochs must be >= 1, got 0"):
        MetricsCallback(every_n_epochs=0)
    with pytest.raises(UsageError, match="unknown feature extractor 'vgg'"):
        MetricsCallback(extractor="vgg")
    with pytest.raises(UsageError, match="unknown metric 'lpips'"):
        MetricsCallback(metrics="fid,lpips")


def test_parse_metrics():
    assert parse_metrics("fid, kid,fid") == ("fid", "kid")
    assert parse_metrics("none") == () == parse_metrics("")
    with pytest.raises(UsageError, match="unknown metric 'ssim'; valid metrics are: fid, kid, is, pr"):
        parse_metrics("fid,ssim")


def test_cache_key_changes_with_everything_that_changes_the_numbers():
    base = Reference("mnist5k", "test", 32)
    key = real_stats_key(base, 1000, "lenet-mnist", "a" * 64)
    variants = [
        real_stats_key(Reference("digits", "test", 32), 1000, "lenet-mnist", "a" * 64),
        real_stats_key(Reference("mnist5k", "train", 32), 1000, "lenet-mnist", "a" * 64),
        real_stats_key(Reference("mnist5k", "test", 28), 1000, "lenet-mnist", "a" * 64),
        real_stats_key(base, 500, "lenet-mnist", "a" * 64),
        real_stats_key(base, 1000, "inception", "a" * 64),
        real_stats_key(base, 1000, "lenet-mnist", "b" * 64),
    ]
    assert len({key, *variants}) == 7
    assert "a" * 64 in key and "/" not in key
    # Data read from disk: the folder is part of the key; built-in data ignores data_root.
    assert real_stats_key(Reference("cifar10", data_root="/a"), 10, "inception", "a" * 64) != \
        real_stats_key(Reference("cifar10", data_root="/b"), 10, "inception", "a" * 64)
    assert real_stats_key(Reference("mnist5k", data_root="/a"), 10, "inception", "a" * 64) == \
        real_stats_key(Reference("mnist5k", data_root="/b"), 10, "inception", "a" * 64)


def test_cache_dir_argument_beats_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir() == Path.home() / ".cache" / "gan_lightning"


@pytest.mark.parametrize("n, world", [(5000, 1), (5000, 3), (7, 4), (3, 4)])
def test_shards_count_every_sample_exactly_once(n, world):
    ranges = [shard(n, world, r) for r in range(world)]
    assert [i for a, b in ranges for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_latents_do_not_depend_on_how_they_are_split():
    whole = latents(3, 0, 2500, 8)
    parts = torch.cat([latents(3, 0, 1000, 8), latents(3, 1000, 1001, 8), latents(3, 1001, 2500, 8)])
    torch.testing.assert_close(whole, parts, rtol=0, atol=0)
    assert whole.shape == (2500, 8) and not torch.equal(whole, latents(4, 0, 2500, 8))


class _Trainer1:
    world_size = 1


def test_gather_is_the_identity_on_one_process():
    rows = torch.randn(5, 3)
    assert gather_rows(_Trainer1(), rows, [5]) is rows


# -- the numbers ------------------------------------------------------------------------------
def test_fid_of_the_reference_against_itself_is_zero(lenet, shared_cache):
    result = fidelity(lenet, shared_cache).evaluate(digits("test")[0])
    assert abs(result.values["fid"]) < 1e-6
    assert result.values["precision"] == 1.0 and result.values["recall"] == 1.0
    # An unbiased estimate of 0: within a few of its own standard deviations.
    assert abs(result.values["kid_mean"]) < 3 * result.values["kid_std"]


class _Pixels(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.pixels = to_uint8(images)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.pixels[i]


def test_values_equal_torch_fidelity_calculate_metrics(lenet, shared_cache):
    import torch_fidelity

    fm = fidelity(lenet, shared_cache, 500, kid_subset_size=300)  # a fixed half of the test split
    fake, real = noisy_digits(300), torch.stack([x for x, _ in fm.real_data()])
    ours = fm.evaluate(fake)
    theirs = torch_fidelity.calculate_metrics(
        input1=_Pixels(fake), input2=_Pixels(real), fid=True, kid=True, isc=True, prc=True,
        feature_extractor="lenet-mnist", feature_extractor_weights_path=str(WEIGHTS_DIR / "lenet_mnist.pt"),
        kid_subset_size=300, cuda=False, cache=False, verbose=False, save_cpu_ram=True,
    )
    names = {"fid": "frechet_inception_distance", "kid_mean": "kernel_inception_distance_mean",
             "kid_std": "kernel_inception_distance_std", "is_mean": "inception_score_mean",
             "is_std": "inception_score_std", "precision": "precision", "recall": "recall"}
    assert set(ours.values) == set(LENET_KEYS)
    for ours_name, their_name in names.items():
        assert ours.values[ours_name] == pytest.approx(theirs[their_name], rel=1e-3), ours_name
    assert ours.values["fid"] > 1.0  # noisy digits are not the reference


def test_float_and_uint8_samples_score_the_same(lenet, shared_cache):
    fake = noisy_digits(300)
    fm = fidelity(lenet, shared_cache, metrics=("fid", "is"))
    assert fm.evaluate(fake).values == fm.evaluate(to_uint8(fake)).values


def test_second_evaluation_only_does_the_generated_half(lenet, tmp_path):
    fake = noisy_digits(300)
    first = fidelity(lenet, tmp_path, 300, kid_subset_size=100).evaluate(fake)
    assert not first.real_stats_cached
    assert len(list(tmp_path.glob("mnist5k-test-32px-n300-lenet-mnist-*.pt"))) == 1

    fresh = fidelity(lenet, tmp_path, 300, kid_subset_size=100)  # a new run: nothing in memory
    seen = []
    extract = fresh.features
    fresh.features = lambda batches: seen.append(1) or extract(batches)
    second = fresh.evaluate(fake)
    assert second.real_stats_cached and len(seen) == 1  # generated features only
    assert second.values == first.values


def test_changed_weights_file_never_reuses_old_statistics_nor_their_name(tmp_path, retrained):
    weights = tmp_path / "lenet.pt"
    shutil.copy(WEIGHTS_DIR / "lenet_mnist.pt", weights)
    fake = noisy_digits(300)
    cache = tmp_path / "cache"
    first = fidelity(load_extractor("lenet-mnist", weights), cache, 300, kid_subset_size=100).evaluate(fake)

    shutil.copy(retrained, weights)  # same shapes, different weights
    second = fidelity(load_extractor("lenet-mnist", weights), cache, 300, kid_subset_size=100).evaluate(fake)
    assert not second.real_stats_cached
    assert second.extractor_sha256 != first.extractor_sha256
    assert second.values["fid"] != pytest.approx(first.values["fid"], rel=1e-3)
    assert len(list(cache.glob("*.pt"))) == 2
    # A copy of the shipped file is the shipped weights: the plain name. Other weights: marked.
    assert set(first.logged()) == {f"{k}/lenet_300" for k in LENET_KEYS}
    assert set(second.logged()) == {f"{k}/lenet-{second.extractor_sha256[:8]}_300" for k in LENET_KEYS}


def test_too_few_samples_for_kid_is_one_clear_line(lenet, shared_cache):
    fm = fidelity(lenet, shared_cache, kid_subset_size=1000)
    assert set(fm.problems(500)) == {"kid"}
    assert fm.problems(500)["kid"] == ("kid needs at least 1000 generated and real samples (kid_subset_size=1000), "
                                       "got num_samples=500; raise num_samples to >= 1000 or lower kid_subset_size "
                                       "to <= 500")
    with pytest.raises(UsageError, match="kid needs at least 1000 generated and real samples.*lower kid_subset_size"):
        fm.check(500)
    with pytest.raises(UsageError, match="--num_samples: must be >= 1"):
        fm.check(0)


def test_a_small_reference_split_is_named_as_the_limit(lenet, shared_cache):
    """sklearn digits: 359 test images. More samples cannot help KID; a smaller subset can."""
    flags = {k: f"--{k}" for k in ("num_samples", "num_real", "kid_subset_size", "metrics")}
    fm = fidelity(lenet, shared_cache, dataset="digits", kid_subset_size=1000, flags=flags)
    assert fm.problems(5000) == {"kid": "kid needs at least 1000 generated and real samples (--kid_subset_size=1000), "
                                        "got 359 real images, all of the digits test split; lower --kid_subset_size "
                                        "to <= 359 or leave kid out of --metrics"}
    both = fm.problems(300)["kid"]
    assert "got --num_samples=300 and 359 real images" in both and "lower --kid_subset_size to <= 300" in both
    assert "raise" not in both  # raising --num_samples alone would not do


def test_num_real_as_the_limit(lenet, shared_cache):
    fm = fidelity(lenet, shared_cache, 400, kid_subset_size=1000)
    assert fm.problems(5000)["kid"].endswith("got num_real=400 real images; raise num_real to >= 1000 or lower "
                                             "kid_subset_size to <= 400")
    assert "raise num_samples and num_real to >= 1000" in fm.problems(300)["kid"]


# -- MetricsCallback in a Trainer -------------------------------------------------------------
def tiny_gan(seed: int = 0, **overrides):
    options = dict(dataset="mnist5k", image_size=28, batch_size=64, z_dim=16, g_width=16, d_width=16, seed=seed,
                   lr_g=1e-3, lr_d=1e-3)
    options.update(overrides)
    cfg = resolve(TrainConfig(**options))
    dm = build_datamodule(cfg)
    L.seed_everything(seed, verbose=False)
    return dm, build_module(cfg, dm.data_shape)


def fit(tmp_path: Path, module, dm, callbacks, **kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, log_every_n_steps=1,
                   logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    options.update(kwargs)
    trainer = L.Trainer(**options)
    trainer.fit(module, datamodule=dm)
    return trainer


def logged_rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


class GeneratorMode(L.Callback):
    """Records whether G's layers are in training mode right after the metrics ran."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.modes.append(all(m.training for m in pl_module.generator.modules()))


def test_trained_generator_scores_better_than_untrained(tmp_path):
    """A tiny DCGAN, 150 G steps on mnist5k: better on FID, KID and IS than the same G untrained.

    (Early on, around 50 steps, G's blobs score worse than its untrained noise; by 150 steps the
    lenet FID has fallen from about 110 to about 45.)
    """
    dm, module = tiny_gan(batch_size=32, lr_g=2e-3, lr_d=2e-3)
    untrained = build_module(resolve(TrainConfig(**module.config)), dm.data_shape)
    untrained.load_state_dict(module.state_dict())
    metrics = MetricsCallback(every_n_epochs=5, num_samples=500, kid_subset_size=250, cache_dir=str(tmp_path / "c"),
                              progress=False)  # 5: only the last epoch, which training stops in
    mode = GeneratorMode()
    fit(tmp_path, module, dm, [metrics, mode], limit_train_batches=None, max_epochs=2, max_steps=300)

    assert int(module.g_steps) == 150 and mode.modes == [True] * 2  # G back in training mode after sampling
    rows = [r for r in logged_rows(tmp_path) if r.get("fid/lenet_500")]
    assert len(rows) == 1  # after the last epoch (max_steps), not after the first
    row = rows[0]
    trained = {k: float(row[f"{k}/lenet_500"]) for k in LENET_KEYS}
    assert trained == pytest.approx({k: metrics.last_metrics[f"{k}/lenet_500"] for k in LENET_KEYS}, rel=1e-5)
    fm = FidelityMetrics(Reference("mnist5k", "test", 28), load_extractor("lenet-mnist"), kid_subset_size=250,
                         cache=tmp_path / "c")
    before = fm.evaluate(untrained.generate, 500, z_dim=untrained.z_dim).values
    assert trained["fid"] < 0.7 * before["fid"]
    assert trained["kid_mean"] < 0.7 * before["kid_mean"]
    assert trained["is_mean"] > before["is_mean"]


def test_bad_config_in_training_warns_and_training_goes_on(tmp_path, capsys):
    dm, module = tiny_gan()
    missing = MetricsCallback(num_samples=200, extractor="lenet-mnist", weights_path=str(tmp_path / "nope.pt"),
                              cache_dir=str(tmp_path / "c"), progress=False)
    few = MetricsCallback(num_samples=200, kid_subset_size=1000, metrics="fid,kid", cache_dir=str(tmp_path / "c"),
                          progress=False, flags={"num_samples": "--metric_num_samples",
                                                 "kid_subset_size": "--metric_kid_subset_size"})
    trainer = fit(tmp_path, module, dm, [missing, few])
    err = capsys.readouterr().err
    assert f"--metric_weights: no file at {tmp_path / 'nope.pt'}" in err and "training goes on" in err
    assert "kid skipped: kid needs at least 1000" in err
    assert "raise --metric_num_samples to >= 1000 or lower --metric_kid_subset_size to <= 200" in err
    assert int(module.g_steps) == 2
    assert missing.off and missing.last_metrics == {}
    assert set(few.last_metrics) == {"fid/lenet_200"} and "fid/lenet_200" in trainer.callback_metrics


def test_callback_with_other_weights_logs_their_mark(tmp_path, retrained):
    dm, module = tiny_gan()
    metrics = MetricsCallback(num_samples=200, metrics="fid", weights_path=str(retrained),
                              cache_dir=str(tmp_path / "c"), progress=False)
    trainer = fit(tmp_path, module, dm, [metrics])
    key = f"fid/lenet-{file_sha256(retrained)[:8]}_200"
    assert set(metrics.last_metrics) == {key} and key in trainer.callback_metrics
    assert logged_keys("mnist5k", 200, metrics="fid", weights_path=str(retrained)) == {key}


def test_wandb_summary_gets_the_metrics(tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    dm, module = tiny_gan()
    logger = WandbLogger(project="gan_lightning_tests", save_dir=str(tmp_path), mode="offline")
    metrics = MetricsCallback(num_samples=200, kid_subset_size=100, metrics="fid,kid", cache_dir=str(tmp_path / "c"),
                              progress=False)
    fit(tmp_path, module, dm, [metrics], logger=logger)
    summary = logger.experiment.summary
    assert set(metrics.last_metrics) == {"fid/lenet_200", "kid_mean/lenet_200", "kid_std/lenet_200"}
    for key, value in metrics.last_metrics.items():
        assert summary[key] == pytest.approx(value, rel=1e-6)  # what W&B logged last: a float32
    logger.experiment.finish()


class SaveRankState(L.Callback):
    """ddp_spawn returns no state: rank 0 saves G (after the metrics ran) and what was logged."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            # " best" keys are the progress bar's (logger=False), not logged values
            logged = {k: float(v) for k, v in trainer.callback_metrics.items() if "lenet" in k and " best" not in k}
            torch.save({"state_dict": pl_module.state_dict(), "logged": logged}, Path(self.folder) / "rank0.pt")


def test_ddp_scores_each_sample_once_like_one_process(tmp_path):
    """2 CPU processes: 151 + 150 samples, gathered on rank 0, equal the single-process numbers."""
    from lightning.pytorch.strategies import DDPStrategy

    dm, module = tiny_gan(batch_size=32, g_width=8, d_width=8)
    cache = str(tmp_path / "c")
    metrics = MetricsCallback(num_samples=301, kid_subset_size=100, metrics="fid,kid", cache_dir=cache, progress=False)
    fit(tmp_path, module, dm, [metrics, SaveRankState(str(tmp_path))], devices=2,
        strategy=DDPStrategy(start_method="spawn", find_unused_parameters=True))

    saved = torch.load(tmp_path / "rank0.pt", weights_only=True)
    assert set(saved["logged"]) == {"fid/lenet_301", "kid_mean/lenet_301", "kid_std/lenet_301"}
    module.load_state_dict(saved["state_dict"])
    fm = FidelityMetrics(Reference("mnist5k", "test", 28), load_extractor("lenet-mnist"), ("fid", "kid"),
                         kid_subset_size=100, cache=cache)
    single = fm.evaluate(module.generate, 301, z_dim=module.z_dim).values
    assert single["fid"] == pytest.approx(saved["logged"]["fid/lenet_301"], rel=1e-5)
    assert single["kid_mean"] == pytest.approx(saved["logged"]["kid_mean/lenet_301"], rel=1e-4)
