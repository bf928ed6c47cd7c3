"""The GAN system in a tiny Trainer: both networks learn, counters count, D has one call site."""

import copy

import lightning as L
import pytest
import torch

from trainer_helpers import tiny_trainer
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.core.noise import InstanceNoise


def setup_run(**cfg_kwargs):
    cfg = resolve(TrainConfig(**cfg_kwargs))
    dm = build_datamodule(cfg)
    L.seed_everything(cfg.seed, verbose=False)
    return dm, build_module(cfg, dm.data_shape)


class CountCalls(InstanceNoise):
    """Instance noise (off) that counts how often D is called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


class KeepOutputs(L.Callback):
    def __init__(self) -> None:
        self.outputs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append(outputs)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(dataset="ring", batch_size=32, g_width=32, d_width=32),
        dict(dataset="mnist5k", image_size=28, batch_size=16, g_width=8, d_width=8, z_dim=16),
    ],
    ids=["ring-mlp", "mnist5k-dcgan"],
)
def test_both_networks_learn_and_counters_count(tmp_path, cfg):
    dm, module = setup_run(**cfg)
    g0 = copy.deepcopy(module.generator.state_dict())
    d0 = copy.deepcopy(module.discriminator.state_dict())
    keep = KeepOutputs()
    trainer = tiny_trainer(tmp_path, callbacks=[keep])
    trainer.fit(module, datamodule=dm)

    for before, net in ((g0, module.generator), (d0, module.discriminator)):
        changed = [k for k, v in net.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
        assert changed, f"{type(net).__name__} did not change"
    assert int(module.g_steps) == 4 and int(module.d_steps) == 4
    assert int(module.images_seen) == 4 * cfg["batch_size"]
    assert trainer.global_step == 8  # every optimizer step counts
    assert {"loss/d", "loss/g"} <= set(trainer.logged_metrics)
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].count("loss/") == 2
    out = keep.outputs[-1]
    assert out["real_logits"].shape == (cfg["batch_size"],) and not out["real_logits"].requires_grad
    assert out["fake_logits"].shape == (cfg["batch_size"],)


def test_n_critic_updates_and_one_d_call_site(tmp_path):
    dm, module = setup_run(dataset="ring", batch_size=16, n_critic=3, loss="wasserstein", gp_weight=10.0)
    module.d_input = CountCalls()
    trainer = tiny_trainer(tmp_path, limit_train_batches=2)
    trainer.fit(module, datamodule=dm)
    assert int(module.d_steps) == 6 and int(module.g_steps) == 2
    assert trainer.global_step == 8
    # Per batch: 3 D steps x (real, fake, gradient penalty) + 1 call for G's update.
    assert module.d_input.calls == 2 * (3 * 3 + 1)


def test_weight_clip_holds_after_training(tmp_path):
    dm, module = setup_run(dataset="ring", batch_size=16, loss="wasserstein", weight_clip=0.01, lr_d=0.05)
    tiny_trainer(tmp_path, limit_train_batches=3).fit(module, datamodule=dm)
    assert max(p.abs().max().item() for p in module.discriminator.parameters()) <= 0.01 + 1e-7


def test_generator_step_leaves_discriminator_without_gradients():
    _, module = setup_run(dataset="ring", batch_size=8)
    module.trainer = None
    fake = module.generator(module.sample_z(8))
    logits, _ = module.discriminate(fake)
    module.discriminator.zero_grad(set_to_none=True)
    from gan_lightning.torch_utils import frozen

    with frozen(module.discriminator):
        logits, _ = module.discriminate(fake)
        module.g_objective(module, None, logits, None).backward()
    assert all(p.grad is None for p in module.discriminator.parameters())
    assert any(p.grad is not None for p in module.generator.parameters())
    assert all(p.requires_grad for p in module.discriminator.parameters())  # restored


def test_generate_restores_mode_and_uses_fixed_latents():
    _, module = setup_run(dataset="mnist5k", image_size=28, g_width=8, d_width=8, z_dim=8)
    module.generator.train()
    a, b = module.generate(), module.generate()
    assert module.generator.training
    assert a.shape == (64, 1, 28, 28)
    torch.testing.assert_close(a, b)  # fixed latents, eval-mode BatchNorm


def test_counters_and_fixed_latents_are_in_the_state_dict():
    _, module = setup_run(dataset="ring")
    keys = set(module.state_dict())
    assert {"images_seen", "d_steps", "g_steps", "fixed_z"} <= keys


def test_rejects_bad_arguments():
    from gan_lightning.core.losses import d_bce_loss, g_nonsaturating_loss
    from gan_lightning.modules import GAN

    _, module = setup_run(dataset="ring")
    with pytest.raises(ValueError, match="n_critic"):
        GAN(module.generator, module.discriminator, d_bce_loss, g_nonsaturating_loss, n_critic=0)
    with pytest.raises(ValueError, match="learning rates"):
        GAN(module.generator, module.discriminator, d_bce_loss, g_nonsaturating_loss, lr_g=0.0)


def test_instance_noise_anneals_with_generator_steps(tmp_path):
    dm, module = setup_run(dataset="ring", batch_size=16, noise_std=0.5, noise_schedule="linear",
                           noise_final_std=0.0, noise_anneal_steps=4)
    assert module.d_input.sigma == 0.5
    trainer = tiny_trainer(tmp_path, limit_train_batches=2)
    trainer.fit(module, datamodule=dm)
    assert module.d_input.step == 2
    assert module.d_input.sigma == pytest.approx(0.25)
    assert trainer.logged_metrics["noise/sigma"] == pytest.approx(0.25)
    assert module.state_dict()["d_input._extra_state"]["sigma"] == pytest.approx(0.25)


TECHNIQUES = {
    "feature_matching": dict(g_objective="feature_matching"),
    "feature_matching_l1_layer": dict(g_objective="feature_matching", fm_distance="l1", fm_layer="body.2"),
    "minibatch_discrimination": dict(minibatch_discrimination=True, mbd_kernels=8, mbd_dim=3),
    "historical_averaging": dict(historical_averaging=0.1),
    "label_smoothing": dict(label_smoothing=0.9),
    "vbn": dict(g_norm="vbn", vbn_ref_size=8),
    "improved_mnist": dict(arch="improved_mnist", image_size=28),
    "everything": dict(g_objective="feature_matching", minibatch_discrimination=True, mbd_kernels=8,
                       historical_averaging=0.1, label_smoothing=0.9, g_norm="vbn", vbn_ref_size=8,
                       noise_std=0.1, noise_schedule="linear", noise_anneal_steps=4),
}


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_each_technique_trains_and_round_trips_its_state(tmp_path, name):
    cfg = dict(dataset="mnist5k", image_size=32, batch_size=16, g_width=8, d_width=8, z_dim=16)
    cfg.update(TECHNIQUES[name])
    dm, module = setup_run(**cfg)
    g0 = copy.deepcopy(module.generator.state_dict())
    tiny_trainer(tmp_path, limit_train_batches=2).fit(module, datamodule=dm)
    assert any(not torch.equal(v, g0[k]) for k, v in module.generator.state_dict().items() if v.is_floating_point())
    assert torch.isfinite(torch.tensor(float(module.trainer.logged_metrics["loss/g"])))
    # A fresh build of the same config accepts the trained state: every technique's state is in it.
    _, fresh = setup_run(**cfg)
    fresh.load_state_dict(module.state_dict())
    for key, value in module.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(fresh.state_dict()[key], value, msg=key)
