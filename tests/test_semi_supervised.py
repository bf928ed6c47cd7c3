"""Semi-supervised GAN (Salimans et al. 2016, sec. 5): K+1 losses, labeled split, EMA, a tiny run."""

import copy
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainer_helpers
from gan_lightning.callbacks import DiscriminatorAccuracy, GradientNorms
from gan_lightning.data.datasets import DATASETS
from gan_lightning.errors import UsageError
from gan_lightning.modules.semi_supervised import (
    SemiSupervisedGAN,
    WeightEMA,
    k_plus_one_real_logit,
    ssl_d_loss,
    ssl_supervised_loss,
    ssl_unsupervised_loss,
)
from gan_lightning.networks import MLPDiscriminator, MLPGenerator
from gan_lightning.experiments.ssl_baseline import supervised_baseline
from gan_lightning.data.semi_supervised import CyclicPermutationSampler, SemiSupervisedDataModule, labeled_indices

MNIST = DATASETS["mnist5k"]
SMALL = 14  # mnist5k resized to 14 x 14 keeps the Trainer runs fast


def nets(data_shape=(1, SMALL, SMALL), width=64, z_dim=16, k=10):
    """A generator and a K-class D with ``features`` and ``head = Linear(F, K)``."""
    g = MLPGenerator(z_dim=z_dim, data_shape=data_shape, width=width)
    d = MLPDiscriminator(data_shape=data_shape, width=width)
    d.head = nn.Linear(d.feature_dim, k)
    return g, d


def tiny_trainer(tmp_path, **kwargs) -> L.Trainer:
    """The shared tiny Trainer over whole epochs (the semi-supervised tests size their runs in steps)."""
    return trainer_helpers.tiny_trainer(tmp_path, **{"limit_train_batches": None, **kwargs})


# -- the K+1 losses against hand-worked values -----------------------------------------------

# Z = sum_k exp(l_k): row 0 has Z = 1 + 2 = 3, row 1 has Z = 0.5 + 0.25 = 0.75.
LOGITS = torch.tensor([[0.0, math.log(2.0)], [math.log(0.5), math.log(0.25)]])
Z = torch.tensor([3.0, 0.75])


def test_real_logit_gives_d_equal_z_over_z_plus_one():
    d = torch.sigmoid(k_plus_one_real_logit(LOGITS))
    torch.testing.assert_close(d, Z / (Z + 1))  # 3/4 and 3/7
    # The same as 1 - p(fake) of a K+1 softmax whose last logit is fixed at 0.
    with_fake = torch.cat([LOGITS, torch.zeros(2, 1)], dim=1)  # (B, K+1)
    torch.testing.assert_close(d, 1 - with_fake.softmax(1)[:, -1])


def test_real_logit_is_stable_for_large_logits():
    big = torch.tensor([[1000.0, 1000.0], [-1000.0, -1000.0]])
    torch.testing.assert_close(k_plus_one_real_logit(big), torch.tensor([1000 + math.log(2), -1000 + math.log(2)]))


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_unsupervised_loss_matches_the_formula(weight):
    unl, fake = LOGITS[:1], LOGITS[1:]  # D(unl) = 3/4, D(fake) = 3/7
    expected = weight * (-math.log(3 / 4) - math.log(1 - 3 / 7))
    torch.testing.assert_close(ssl_unsupervised_loss(unl, fake, weight), torch.tensor(expected))


def test_supervised_loss_is_the_k_plus_one_conditional():
    labels = torch.tensor([1, 0])
    # row 0: p(y=1 | y < K+1) = 2/3; row 1: p(y=0 | y < K+1) = 0.5 / 0.75 = 2/3.
    expected = -math.log(2 / 3)
    torch.testing.assert_close(ssl_supervised_loss(LOGITS, labels), torch.tensor(expected))
    # -log p(y | x) + log(1 - p(fake | x)) over the K+1 softmax with the fake logit at 0.
    log_p = torch.cat([LOGITS, torch.zeros(2, 1)], dim=1).log_softmax(1)  # (B, K+1)
    conditional = log_p[torch.arange(2), labels] - torch.log1p(-log_p[:, -1].exp())
    torch.testing.assert_close(ssl_supervised_loss(LOGITS, labels), -conditional.mean())


def test_d_loss_is_supervised_plus_unsupervised():
    labels = torch.tensor([1, 0])
    unl = torch.tensor([[2.0, -1.0], [0.5, 0.5], [0.0, 3.0]])
    fake = torch.tensor([[-2.0, -3.0]])
    expected = -math.log(2 / 3) + 0.5 * (
        F.softplus(-torch.logsumexp(unl, 1)).mean() + F.softplus(torch.logsumexp(fake, 1)).mean()
    )
    torch.testing.assert_close(ssl_d_loss(LOGITS, labels, unl, fake, 0.5), expected)


# -- the labeled split and the batches -------------------------------------------------------


def _dm(labels_per_class=10, **kwargs):
    kwargs = {"image_size": SMALL, "batch_size": 50, **kwargs}
    dm = SemiSupervisedDataModule(MNIST, labels_per_class, **kwargs)
    dm.setup("fit")
    return dm


def test_labeled_split_has_labels_per_class_of_each_class_and_is_fixed():
    a, b, other = _dm(7), _dm(7), _dm(7, seed=2)
    y = torch.stack([item[1] for item in a.labeled_dataset])
    assert torch.bincount(y, minlength=10).tolist() == [7] * 10
    assert torch.equal(a.labeled_index, b.labeled_index)  # same seed, same pick
    assert not torch.equal(a.labeled_index, other.labeled_index)
    assert len(a.labeled_index.unique()) == 70


def test_unlabeled_set_is_all_training_images_or_the_rest():
    all_dm, rest_dm = _dm(10), _dm(10, unlabeled="rest")
    train = all_dm.dataset("train")
    assert len(all_dm.unlabeled_dataset) == len(train) == 4000
    assert len(rest_dm.unlabeled_dataset) == 4000 - 100
    labeled = {train[i][0].numpy().tobytes() for i in rest_dm.labeled_index.tolist()}
    rest = {x.numpy().tobytes() for x in rest_dm.unlabeled_dataset}
    assert not labeled & rest
    assert isinstance(all_dm.unlabeled_dataset[0], torch.Tensor)  # images only, no labels


@pytest.mark.parametrize("bad", [0, -3, 401, 2.5, True])
def test_bad_labels_per_class_raises(bad):
    with pytest.raises(ValueError, match="labels_per_class"):
        _dm(bad)  # 401: mnist5k's train split has 400 per class
    with pytest.raises(UsageError):  # scripts print it as one line
        labeled_indices(torch.arange(10).repeat(3), bad if bad != 401 else 4, seed=0)


def test_training_batches_pair_labeled_and_unlabeled_and_cycle_the_labels():
    dm = _dm(2, batch_size=10)  # 20 labeled examples, 400 batches of 10
    L.seed_everything(0, verbose=False)
    batches = list(dm.train_dataloader())
    assert len(batches) == 4000 // 10
    batch = batches[0][0] if isinstance(batches[0], tuple) else batches[0]
    x_lab, y_lab = batch["labeled"]
    assert x_lab.shape == (10, 1, SMALL, SMALL) and y_lab.shape == (10,)
    assert batch["unlabeled"].shape == (10, 1, SMALL, SMALL)
    # Each permutation of the 20 labeled examples uses every one once: 200 passes, 200 each.
    ys = torch.cat([(b[0] if isinstance(b, tuple) else b)["labeled"][1] for b in batches])
    assert torch.bincount(ys, minlength=10).tolist() == [400] * 10


def test_cyclic_sampler_yields_whole_permutations():
    idx = list(CyclicPermutationSampler(4, 10))
    assert len(idx) == 10 and sorted(idx[:4]) == sorted(idx[4:8]) == [0, 1, 2, 3]


# -- EMA ---------------------------------------------------------------------------------------


def test_ema_moves_toward_the_live_weights():
    net = nn.Linear(3, 2)
    ema = WeightEMA(net, decay=0.9)
    start = copy.deepcopy(ema.net.state_dict())
    with torch.no_grad():
        net.weight.add_(1.0)
    d = ema.current_decay()
    assert d == pytest.approx(2 / 11)  # warm-up: min(0.9, (1 + 1) / (10 + 1))
    ema.update(net)
    torch.testing.assert_close(ema.net.weight, d * start["weight"] + (1 - d) * net.weight)
    gap = (ema.net.weight - net.weight).abs().max()
    for _ in range(30):
        ema.update(net)
    assert (ema.net.weight - net.weight).abs().max() < gap / 5
    assert int(ema.updates) == 31 and ema.current_decay() == pytest.approx(33 / 42)  # still warming up
    ema.updates.fill_(1000)
    assert ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.net.parameters())


# -- the module ----------------------------------------------------------------------------------


def _module(**kwargs):
    g, d = nets()
    return SemiSupervisedGAN(g, d, 10, **kwargs)


def test_head_with_the_wrong_number_of_classes_is_rejected():
    g, d = nets(k=3)
    module = SemiSupervisedGAN(g, d, 10)
    with pytest.raises(ValueError, match="num_outputs=10"):
        module.classify(torch.zeros(2, 1, SMALL, SMALL))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_d=0.0), "learning rates"), (dict(ema_decay=1.0), "ema_decay"),
    (dict(unsup_weight=-1.0), "unsup_weight"), (dict(lr_decay_steps=-1), "lr_decay_steps"),
])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _module(**kwargs)


def test_state_dict_holds_ema_and_counters(tmp_path):
    dm = _dm(5, batch_size=20)
    L.seed_everything(0, verbose=False)
    module = _module()
    trainer = tiny_trainer(tmp_path, limit_train_batches=3, limit_val_batches=1, enable_checkpointing=True)
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert {"d_steps", "g_steps", "images_seen", "fixed_z", "ema.updates"} <= set(state)
    assert int(state["d_steps"]) == int(state["g_steps"]) == int(state["ema.updates"]) == 3
    assert int(state["images_seen"]) == 60
    ema_keys = [k for k in state if k.startswith("ema.net.")]
    assert len(ema_keys) == len(module.discriminator.state_dict())
    # The EMA is an average, not a copy of the live weights, and comes back on load.
    assert not torch.equal(state["ema.net.head.weight"], state["discriminator.head.weight"])
    fresh = _module()
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.ema.net.head.weight, module.ema.net.head.weight)
    assert int(fresh.d_steps) == 3


def test_one_d_call_site_and_detached_outputs_for_callbacks(tmp_path):
    dm = _dm(5, batch_size=20)
    L.seed_everything(0, verbose=False)
    module = _module()
    calls = []
    features = module.discriminator.features
    module.discriminator.features = lambda x: calls.append(len(x)) or features(x)

    class Keep(L.Callback):
        outputs = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.outputs.append(outputs)

    trainer = tiny_trainer(
        tmp_path, limit_train_batches=2, limit_val_batches=0,
        callbacks=[Keep(), DiscriminatorAccuracy(), GradientNorms(shadow_every_n_steps=0)],
    )
    trainer.fit(module, datamodule=dm)
    # Per batch: labeled, unlabeled and fake for D; fake and real features for G.
    assert calls == [20] * 5 * 2
    out = Keep.outputs[-1]
    assert out["real_logits"].shape == out["fake_logits"].shape == (20,)
    assert not out["real_logits"].requires_grad
    assert trainer.global_step == 4  # one D and one G step per batch
    logged = set(trainer.logged_metrics)
    assert {"loss/d", "loss/g", "loss/d_supervised", "loss/d_unsupervised", "d/acc", "grad_norm/d"} <= logged


def test_tiny_run_beats_chance_and_so_does_the_baseline(tmp_path):
    """10 labels per class, a small MLP D on 14 x 14 digits: well below the 0.9 error of chance."""
    dm = _dm(10, batch_size=50)
    L.seed_everything(0, verbose=False)
    module = _module(ema_decay=0.99)
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_train_batches=40)
    trainer.fit(module, datamodule=dm)
    error = float(trainer.callback_metrics["ssl/test_error"])
    assert 0.0 <= error < 0.7
    assert "ssl/test_error_live" in trainer.callback_metrics
    assert int(module.d_steps) == 80
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert test["ssl/test_error"] == pytest.approx(error)  # same split, same weights

    L.seed_everything(0, verbose=False)
    _, d = nets()
    baseline = supervised_baseline(d, dm, steps=80, ema_decay=0.99)
    assert 0.0 <= baseline < 0.7


def test_improved_mnist_discriminator_fits_when_available():
    improved = pytest.importorskip("gan_lightning.networks.improved_mnist")
    d = improved.ImprovedMNISTDiscriminator((1, 28, 28), num_outputs=10)
    g = MLPGenerator(z_dim=8, data_shape=(1, 28, 28), width=16)
    module = SemiSupervisedGAN(g, d, 10)
    logits, features = module.classify(torch.zeros(4, 1, 28, 28))
    assert logits.shape == (4, 10) and features.shape[0] == 4
    assert module.discriminate(torch.zeros(4, 1, 28, 28))[0].shape == (4,)


def test_train_script_runs_the_semi_supervised_task_and_resumes(tmp_path):
    """--task semi_supervised through train.py: ssl/test_error in metrics.csv, EMA in last.ckpt, resume."""
    import csv

    from gan_lightning.runs.cli import run_cli
    from gan_lightning.runs.training import main

    argv = ["--task", "semi_supervised", "--dataset", "digits", "--arch", "mlp", "--image_size", "8",
            "--g_width", "32", "--d_width", "32", "--z_dim", "16", "--batch_size", "50", "--lr_g", "0.003",
            "--lr_d", "0.003", "--labels_per_class", "5", "--metric_every_n_epochs", "0",
            "--out_dir", str(tmp_path), "--run_name", "ssl"]
    assert run_cli(main, [*argv, "--max_epochs", "1"]) == 0
    run = tmp_path / "ssl"
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    steps = int(state["g_steps"])
    assert steps == 1437 // 50 and int(state["ema.updates"]) == steps
    assert state["discriminator.head.weight"].shape == (10, 32)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    errors = [float(r["ssl/test_error"]) for r in rows if r.get("ssl/test_error")]
    assert len(errors) == 1 and 0 <= errors[0] < 0.9  # below chance after one epoch on 50 labels

    assert run_cli(main, [*argv, "--resume", "last", "--max_epochs", "2"]) == 0
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert int(state["g_steps"]) == 2 * steps
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len([r for r in rows if r.get("ssl/test_error")]) == 2

    from gan_lightning.runs.folder import load

    loaded = load(ckpt)  # evaluate.py rebuilds the semi-supervised module
    module, cfg = loaded.module, loaded.cfg
    assert isinstance(module, SemiSupervisedGAN) and cfg.task == "semi_supervised"


def test_data_dependent_init_runs_once_and_the_ema_starts_from_it():
    from types import SimpleNamespace

    from gan_lightning.networks import ImprovedMNISTDiscriminator

    torch.manual_seed(0)
    images = torch.rand(40, 1, 28, 28) * 2 - 1
    d = ImprovedMNISTDiscriminator((1, 28, 28), num_outputs=10)
    module = SemiSupervisedGAN(MLPGenerator(z_dim=8, data_shape=(1, 28, 28), width=16), d, 10, data_init=32)
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(unlabeled_dataset=images), world_size=1)
    before = copy.deepcopy(d.state_dict())
    module.on_train_start()
    assert int(module.data_initialized) == 1
    changed = [k for k in before if not torch.equal(before[k], d.state_dict()[k])]
    assert any("original0" in k for k in changed)  # the scales g moved
    for k, v in d.state_dict().items():
        torch.testing.assert_close(module.ema.net.state_dict()[k], v)
    after = copy.deepcopy(d.state_dict())
    module.on_train_start()  # as after a resume: the flag is in the checkpoint
    for k, v in d.state_dict().items():
        torch.testing.assert_close(v, after[k])


# -- the reference recipe (openai/improved-gan, train_mnist_feature_matching.py) ------------------


def test_g_step_matches_features_against_its_own_batch_and_fresh_latents():
    from gan_lightning.core.objectives import FeatureMatching

    dm = _dm(5, batch_size=20)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    batch = batch[0] if isinstance(batch, tuple) else batch
    assert batch["unlabeled_g"].shape == batch["unlabeled"].shape
    assert not torch.equal(batch["unlabeled_g"], batch["unlabeled"])  # a second order of the same set

    class Spy(FeatureMatching):
        def forward(self, system, real, fake_logits, fake_features):
            self.seen = real
            return super().forward(system, real, fake_logits, fake_features)

    L.seed_everything(0, verbose=False)
    module = _module()
    module.g_objective = Spy("l2")
    module.trainer = None
    drawn = []
    sample_z = module.sample_z
    module.sample_z = lambda n: drawn.append(sample_z(n)) or drawn[-1]
    module.optimizers = lambda: module.configure_optimizers()
    module.manual_backward = lambda loss: loss.backward()
    module.log_dict = lambda *a, **k: None
    module.training_step(batch, 0)
    assert torch.equal(module.g_objective.seen, batch["unlabeled_g"])
    assert len(drawn) == 2 and not torch.equal(drawn[0], drawn[1])  # D's z, then G's own


def test_unlabeled_batches_of_g_cover_the_set_once_per_epoch_in_another_order():
    dm = _dm(5, batch_size=100)
    batches = [b[0] if isinstance(b, tuple) else b for b in dm.train_dataloader()]
    d_side = torch.cat([b["unlabeled"].flatten(1) for b in batches])  # (4000, 196)
    g_side = torch.cat([b["unlabeled_g"].flatten(1) for b in batches])
    assert len(g_side) == len(d_side) == 4000 and not torch.equal(g_side, d_side)
    assert torch.equal(torch.unique(g_side, dim=0), torch.unique(d_side, dim=0))


def test_data_dependent_init_measures_with_the_noise_layers_on():
    from gan_lightning.modules.semi_supervised import init_discriminator_from_data
    from gan_lightning.networks import ImprovedMNISTDiscriminator

    torch.manual_seed(0)
    x = torch.rand(500, 1, 28, 28) * 2 - 1
    d = ImprovedMNISTDiscriminator((1, 28, 28), num_outputs=10)
    init_discriminator_from_data(d, x)
    assert d.training  # the mode it was found in
    first = d.body[2]  # the first weight-normalized Linear, after Flatten and the input noise
    with torch.no_grad():
        noisy_std = first(x.flatten(1) + 0.6 * torch.randn(500, 784)).std(0).mean()
        clean_std = first(x.flatten(1)).std(0).mean()
    assert abs(float(noisy_std) - 1.0) < 0.05  # unit variance under the noise D trains with
    assert float(clean_std) < 0.9  # (an init without the noise would give 1 here)
