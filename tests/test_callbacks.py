"""DiscriminatorAccuracy and GradientNorms: hand-worked values, tiny Trainer runs, DDP on 2 CPUs."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from trainer_helpers import tiny_trainer
from gan_lightning.callbacks.accuracy import DiscriminatorAccuracy, discriminator_stats
from gan_lightning.callbacks.grad_norms import GradientNorms
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.diagnostics.gradients import PAPER_G_COSTS
from gan_lightning.core.losses import d_bce_loss

ACC_KEYS = ("d/acc_real", "d/acc_fake", "d/acc", "d/jsd_estimate", "d/logit_real", "d/logit_fake")
SHADOW_KEYS = ("grad_norm/g_minimax", "grad_norm/g_nonsaturating")
LOG2 = math.log(2.0)


def setup_run(seed: int = 0, **cfg_kwargs):
    kwargs = dict(dataset="ring", arch="mlp", batch_size=64, z_dim=8, g_width=16, d_width=16, seed=seed)
    kwargs.update(cfg_kwargs)
    cfg = resolve(TrainConfig(**kwargs))
    dm = build_datamodule(cfg)
    L.seed_everything(seed, verbose=False)
    return dm, build_module(cfg, dm.data_shape)


def tensor_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (state_dict minus non-tensor extra state), cloned."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


def read_csv(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


class KeepOutputs(L.Callback):
    """Keeps every batch's training_step output (the logits D produced)."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append({k: v.detach().clone() for k, v in outputs.items()})


# -- discriminator_stats on logits worked out by hand -----------------------------------------
def test_stats_of_a_perfect_confident_discriminator():
    stats = discriminator_stats(torch.full((8,), 30.0), torch.full((8,), -30.0))
    for key in ("d/acc_real", "d/acc_fake", "d/acc"):
        assert float(stats[key]) == 1.0
    # L_bce = 2 softplus(-30) ~ 2e-13, so the estimate is log 2: disjoint supports.
    torch.testing.assert_close(stats["d/jsd_estimate"], torch.tensor(LOG2), rtol=0, atol=1e-9)
    assert float(stats["d/logit_real"]) == 30.0 and float(stats["d/logit_fake"]) == -30.0


def test_stats_of_an_undecided_discriminator():
    # Logit 0 is D = 1/2: "fake" by the logit > 0 rule, L_bce = 2 log 2, estimate exactly 0.
    stats = discriminator_stats(torch.zeros(6), torch.zeros(6))
    assert float(stats["d/acc_real"]) == 0.0
    assert float(stats["d/acc_fake"]) == 1.0
    assert float(stats["d/acc"]) == 0.5
    torch.testing.assert_close(stats["d/jsd_estimate"], torch.tensor(0.0), rtol=0, atol=1e-7)


def test_stats_of_mixed_logits_by_hand():
    real = torch.tensor([2.0, -1.0, 0.5, 3.0])  # 3 of 4 > 0
    fake = torch.tensor([-2.0, 1.0, 0.5, 0.0])  # -2 and 0 are <= 0: 2 of 4
    stats = discriminator_stats(real, fake)
    assert float(stats["d/acc_real"]) == 0.75
    assert float(stats["d/acc_fake"]) == 0.5
    assert float(stats["d/acc"]) == 0.625
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    bce = sum(softplus(-r) for r in real.tolist()) / 4 + sum(softplus(f) for f in fake.tolist()) / 4
    torch.testing.assert_close(d_bce_loss(real, fake), torch.tensor(bce))
    torch.testing.assert_close(stats["d/jsd_estimate"], torch.tensor((math.log(4) - bce) / 2))
    torch.testing.assert_close(stats["d/logit_real"], torch.tensor(1.125))
    torch.testing.assert_close(stats["d/logit_fake"], torch.tensor(-0.125))


def test_jsd_estimate_is_the_jsd_for_the_optimal_discriminator():
    # P = (3/4, 1/4) and Q = (1/4, 3/4) on {a, b}; optimal D = p / (p + q), logit = log(p / q).
    # Batches in exact proportion: real = 3 a + 1 b, fake = 1 a + 3 b.
    la, lb = math.log(3.0), -math.log(3.0)
    stats = discriminator_stats(torch.tensor([la, la, la, lb]), torch.tensor([la, lb, lb, lb]))
    kl_to_mid = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(P || M) = KL(Q || M)
    torch.testing.assert_close(stats["d/jsd_estimate"], torch.tensor(kl_to_mid))
    assert float(stats["d/acc"]) == 0.75


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(every_n_steps=0), dict(every_n_steps=1.5), dict(every_n_steps=True),
        dict(shadow_every_n_steps=-1), dict(shadow_batch_size=0),
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        GradientNorms(**kwargs)
    if set(kwargs) == {"every_n_steps"}:
        with pytest.raises(ValueError):
            DiscriminatorAccuracy(**kwargs)


# -- shadow norms against a hand-made autograd computation ------------------------------------
def test_shadow_norms_equal_direct_autograd_and_leave_the_module_alone():
    _, module = setup_run()
    module.train()  # G has BatchNorm: it must use batch statistics, and its buffers must survive
    callback = GradientNorms(shadow_batch_size=32)
    before = tensor_state(module)
    rng = torch.get_rng_state()

    norms = callback.shadow_norms(module)

    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in module.parameters())
    for k, v in tensor_state(module).items():
        assert torch.equal(v, before[k]), k
    z = module.sample_z(32)  # the RNG was restored, so these are the latents the callback drew
    assert set(norms) == set(PAPER_G_COSTS)
    for name, cost in PAPER_G_COSTS.items():
        twin = copy.deepcopy(module)
        cost(twin.discriminate(twin.generator(z))[0]).backward()
        grads = [p.grad for p in twin.generator.parameters()]
        assert all(g is not None for g in grads)
        expected = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        assert expected > 0
        assert norms[name] == pytest.approx(expected, rel=1e-5)
    assert norms["minimax"] != pytest.approx(norms["nonsaturating"], rel=1e-3)


@pytest.mark.parametrize("objective", ["nonsaturating", "minimax", "feature_matching"])
def test_in_step_shadow_norms_equal_direct_autograd_and_leave_the_update_alone(objective):
    """The module's G update measures both norms on its own graph (reusing the trained cost's gradient)."""
    flags = {"g_objective": "feature_matching"} if objective == "feature_matching" else {"loss": objective}
    _, module = setup_run(**flags)
    module.train()
    module.manual_backward = lambda loss: loss.backward()  # no Trainer here
    z = torch.randn(32, module.z_dim)
    real = torch.randn(32, 2)

    def g_loss(m):
        fake = m.generator(z)
        logits, features = m.discriminate(fake)
        return m.g_objective(m, real, logits, features), logits

    twin = copy.deepcopy(module)
    loss, _ = g_loss(twin)
    loss.backward()  # the update without shadow norms
    module.shadow_due = True
    loss, logits = g_loss(module)
    module.g_backward(loss, logits)
    assert module.shadow_due is False and set(module.shadow_norms) == set(PAPER_G_COSTS)
    for p, q in zip(module.generator.parameters(), twin.generator.parameters()):
        torch.testing.assert_close(p.grad, q.grad)  # the training gradients are untouched
    for name, cost in PAPER_G_COSTS.items():
        other = copy.deepcopy(twin)
        other.zero_grad(set_to_none=True)
        cost(other.discriminate(other.generator(z))[0]).backward()
        expected = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in other.generator.parameters()))
        assert float(module.shadow_norms[name]) == pytest.approx(expected, rel=1e-5)
    reused = module._trained_paper_cost()
    assert reused == (None if objective == "feature_matching" else objective)


# -- tiny Trainer runs ------------------------------------------------------------------------
def test_trainer_run_logs_every_key(tmp_path):
    dm, module = setup_run(n_critic=2)
    keep = KeepOutputs()
    accuracy = DiscriminatorAccuracy(every_n_steps=2)
    norms = GradientNorms(per_layer=True, shadow_every_n_steps=2, shadow_batch_size=16)
    trainer = tiny_trainer(tmp_path, [keep, accuracy, norms], limit_train_batches=4, log_every_n_steps=2)
    trainer.fit(module, datamodule=dm)

    logged = trainer.logged_metrics
    for key in (*ACC_KEYS, "grad_norm/d", "grad_norm/g"):
        assert key in logged, key
        assert torch.isfinite(logged[key]), key
    assert "d/acc" in trainer.progress_bar_metrics
    # The last window is batches 2 and 3: pooled over their examples = stats of the concatenation.
    last = keep.outputs[2:4]
    expected = discriminator_stats(
        torch.cat([o["real_logits"] for o in last]), torch.cat([o["fake_logits"] for o in last])
    )
    for key in ACC_KEYS:
        torch.testing.assert_close(logged[key], expected[key], msg=key)
    # Per-layer norms name D's and G's own parameters and add up to the global norm.
    for player, net in (("d", module.discriminator), ("g", module.generator)):
        names = [n for n, _ in net.named_parameters()]
        layer = torch.stack([logged[f"grad_norm/{player}/{n}"] for n in names])
        torch.testing.assert_close(layer.norm(), logged[f"grad_norm/{player}"])

    rows = read_csv(tmp_path)
    for key in (*ACC_KEYS, *SHADOW_KEYS, "grad_norm/d", "grad_norm/g", "grad_norm/d/head.weight"):
        assert [r["step"] for r in rows if r.get(key)] == ["1", "3"], key  # log_every_n_steps=2
    assert all(float(r[key]) > 0 for r in rows for key in SHADOW_KEYS if r.get(key))


def test_shadow_norms_are_written_once_per_measurement(tmp_path):
    """Measured every 4 batches, logged every 2: each value appears at its own step only, never again
    at a later logging step as if measured anew."""
    dm, module = setup_run()
    norms = GradientNorms(shadow_every_n_steps=4, shadow_batch_size=16)
    trainer = tiny_trainer(tmp_path, [norms], limit_train_batches=8, log_every_n_steps=2)
    trainer.fit(module, datamodule=dm)
    rows = read_csv(tmp_path)
    for key in SHADOW_KEYS:
        assert [r["step"] for r in rows if r.get(key)] == ["3", "7"], key
    assert [r["step"] for r in rows if r.get("grad_norm/d")] == ["1", "3", "5", "7"]


def test_callbacks_do_not_change_the_training_run(tmp_path):
    class UsesRandomNumbers(L.Callback):  # the control: a callback that does disturb the run
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            torch.rand(1)

    def final_state(callbacks, folder):
        dm, module = setup_run(seed=3)
        tiny_trainer(tmp_path / folder, callbacks, limit_train_batches=5).fit(module, datamodule=dm)
        return tensor_state(module)

    plain = final_state([], "plain")
    measured = final_state(
        [DiscriminatorAccuracy(), GradientNorms(per_layer=True, shadow_every_n_steps=1, shadow_batch_size=64)],
        "measured",
    )
    disturbed = final_state([UsesRandomNumbers()], "disturbed")
    assert plain.keys() == measured.keys()
    for key in plain:  # weights, BatchNorm statistics, counters: bit for bit
        assert torch.equal(plain[key], measured[key]), key
    assert not all(torch.equal(plain[k], disturbed[k]) for k in plain)


# -- DDP, 2 CPU processes ---------------------------------------------------------------------
class SaveRankState(L.Callback):
    """Saves each rank's logits and its logged values, since ddp_spawn returns no state."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.outputs: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append({k: outputs[k].detach().cpu().clone() for k in ("real_logits", "fake_logits")})

    def on_train_end(self, trainer, pl_module):
        logged = {k: v.detach().cpu().clone() for k, v in trainer.callback_metrics.items()}
        norms = next(c for c in trainer.callbacks if isinstance(c, GradientNorms))
        logged.update({k: torch.tensor(v) for k, v in norms.last_shadow.items()})  # written by rank 0 only
        torch.save({"outputs": self.outputs, "logged": logged}, Path(self.folder) / f"rank{trainer.global_rank}.pt")


def test_ddp_logs_rank_pooled_values(tmp_path):
    from lightning.pytorch.strategies import DDPStrategy

    dm, module = setup_run(seed=1)
    callbacks = [
        SaveRankState(str(tmp_path)),
        DiscriminatorAccuracy(every_n_steps=3),
        GradientNorms(shadow_every_n_steps=3, shadow_batch_size=16),
    ]
    trainer = tiny_trainer(
        tmp_path, callbacks, limit_train_batches=6, log_every_n_steps=3, devices=2,
        strategy=DDPStrategy(start_method="spawn", find_unused_parameters=True),
    )
    trainer.fit(module, datamodule=dm)

    rows = read_csv(tmp_path)
    for key in (*ACC_KEYS, *SHADOW_KEYS, "grad_norm/d", "grad_norm/g"):
        assert [r["step"] for r in rows if r.get(key)] == ["2", "5"], key

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    # The accuracy window (batches 3-5) is pooled over both ranks, and both ranks log that.
    last = [o for rank in ranks for o in rank["outputs"][3:6]]
    expected = discriminator_stats(
        torch.cat([o["real_logits"] for o in last]), torch.cat([o["fake_logits"] for o in last])
    )
    assert not torch.equal(ranks[0]["outputs"][5]["real_logits"], ranks[1]["outputs"][5]["real_logits"])
    for key in ACC_KEYS:
        for rank in ranks:
            torch.testing.assert_close(rank["logged"][key], expected[key], msg=key)
        assert float(rows[-1][key]) == pytest.approx(float(expected[key]), rel=1e-5, abs=1e-6), key
    # DDP averaged the gradients, so unsynced norms agree; shadow norms are synced rank means.
    for key in ("grad_norm/d", "grad_norm/g", *SHADOW_KEYS):
        torch.testing.assert_close(ranks[0]["logged"][key], ranks[1]["logged"][key], msg=key)


# -- sample grids -------------------------------------------------------------------------------
@pytest.mark.parametrize("g_ema, which", [(0.0, "live G"), (0.999, "EMA of G (decay 0.999)")])
def test_every_sample_grid_is_titled_with_its_epoch_g_steps_and_which_g(tmp_path, monkeypatch, g_ema, which):
    from gan_lightning.callbacks import SampleGrid
    from gan_lightning.callbacks import samples

    titles = []
    real_save = samples.save_image_grid
    monkeypatch.setattr(samples, "save_image_grid", lambda images, path, **kw: titles.append(kw["title"])
                        or real_save(images, path, **kw))
    dm, module = setup_run(dataset="digits", arch="mlp", g_ema=g_ema)
    grids = SampleGrid(tmp_path / "samples", every_n_epochs=2)
    tiny_trainer(tmp_path, [grids], max_epochs=3, limit_train_batches=3).fit(module, datamodule=dm)
    # epoch 2 by every_n_epochs, then the end (epoch 3) as its G steps were not shown yet
    assert titles == [f"epoch 2, 6 G steps, {which}", f"epoch 3 (end of training), 9 G steps, {which}"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch_0002.png", "step_0000009.png"]


def test_a_sample_grid_logged_to_wandb_has_its_title_as_caption(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import lightning.pytorch.loggers as loggers

    from gan_lightning.callbacks import SampleGrid

    class FakeWandb:
        def log_image(self, **kwargs):
            self.logged = kwargs

    monkeypatch.setattr(loggers, "WandbLogger", FakeWandb)  # SampleGrid.write looks the class up when it runs
    _, module = setup_run(dataset="digits", arch="mlp", g_ema=0.999)
    wandb = FakeWandb()
    trainer = SimpleNamespace(loggers=[wandb], fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=7)))
    path = SampleGrid(tmp_path).write(trainer, module, "epoch_0001", "epoch 1")
    assert wandb.logged == {"key": "samples", "images": [str(path)], "step": 7,
                            "caption": ["epoch 1, 0 G steps, EMA of G (decay 0.999)"]}
