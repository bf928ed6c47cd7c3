"""One guard for every optimizer step of both training loops, with any torch optimizer.

A non-finite loss never reaches the weights: fused optimizers skip on the device (``found_inf``), any
other optimizer is skipped on the host. Under --on_nonfinite stop both tasks exit 3 and keep the last
good checkpoint byte for byte; under skip both count the skipped updates and train on.
"""

import functools

import lightning as L
import pytest
import torch

from trainer_helpers import tiny_trainer
from gan_lightning.build import build_datamodule, build_module
from gan_lightning.config import TrainConfig, resolve
from gan_lightning.modules import semi_supervised
from gan_lightning.modules.base import adam
from gan_lightning.runs.cli import run_cli
from gan_lightning.runs.training import main

TASKS = {
    "gan": dict(dataset="ring", batch_size=32, g_width=16, d_width=16, z_dim=2),
    "semi_supervised": dict(task="semi_supervised", dataset="digits", arch="mlp", image_size=8, g_width=16,
                            d_width=16, z_dim=8, batch_size=50, labels_per_class=5, lr_g=1e-3, lr_d=1e-3),
}
OPTIMIZERS = {
    "sgd": functools.partial(torch.optim.SGD, lr=1e-2, momentum=0.9),
    "rmsprop": functools.partial(torch.optim.RMSprop, lr=1e-3),  # the WGAN paper's optimizer
    "adam_foreach": functools.partial(torch.optim.Adam, lr=1e-3, foreach=True),
    "adam_for_loop": functools.partial(torch.optim.Adam, lr=1e-3, foreach=False),
    "adam_fused": functools.partial(torch.optim.Adam, lr=1e-3, fused=True),
}
POISONED = 2  # the batch whose samples of G are all NaN: D's and G's losses both non-finite


def tensors(module) -> dict[str, torch.Tensor]:
    """A copy of the module's state_dict tensors (it also holds plain values, e.g. the noise schedule)."""
    return {k: v.clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}


class PoisonOneBatch(L.Callback):
    """Makes every sample of G in batch ``POISONED`` NaN and records the module's state around it."""

    def __init__(self) -> None:
        self.active, self.before, self.after = False, None, None

    def setup(self, trainer, pl_module, stage):
        pl_module.generator.register_forward_hook(lambda m, i, out: out * float("nan") if self.active else out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.active = batch_idx == POISONED
        if self.active:
            self.before = tensors(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.active:
            self.after = tensors(pl_module)
        self.active = False


def module_with(task: str, make_opt):
    cfg = resolve(TrainConfig(**TASKS[task], on_nonfinite="skip"))
    dm = build_datamodule(cfg)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg, dm.data_shape)
    # What a library user does: return another optimizer from configure_optimizers.
    module.configure_optimizers = lambda: [make_opt(module.discriminator.parameters()),
                                           make_opt(module.generator.parameters())]
    return module, dm


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("task", list(TASKS))
def test_any_optimizer_trains_both_tasks_and_skips_a_nan_step(tmp_path, task, opt_name):
    module, dm = module_with(task, OPTIMIZERS[opt_name])
    start = tensors(module)
    poison = PoisonOneBatch()
    tiny_trainer(tmp_path, callbacks=[poison], limit_train_batches=5).fit(module, datamodule=dm)

    assert int(module.skipped_steps) == 2  # D's update and G's update of the poisoned batch
    assert int(module.d_steps) == int(module.g_steps) == 4
    # Nothing of the skipped updates was applied: weights, EMAs and buffers as before the batch ...
    for name, value in poison.before.items():
        moved_by_forward = "running_" in name  # batch-norm statistics follow the forward pass, not the update
        if value.is_floating_point() and not moved_by_forward:
            torch.testing.assert_close(poison.after[name], value, rtol=0, atol=0, msg=name)
    # ... and the optimizers saw 4 steps, not 5 (their state moved only on applied updates).
    for opt in module.trainer.optimizers:
        steps = [s["step"] for s in opt.state.values() if "step" in s]
        assert all(int(s) == 4 for s in steps), (opt_name, steps)
    # The other batches trained both networks, and every weight is finite.
    state = tensors(module)
    for prefix in ("generator.", "discriminator."):
        assert any(not torch.equal(state[k], start[k]) for k in state if k.startswith(prefix)), prefix
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_device_skip_is_used_where_the_optimizer_has_it(monkeypatch):
    """Fused optimizers get ``found_inf`` and no host read of the flag; the others are skipped on the host."""
    module, _ = module_with("gan", OPTIMIZERS["sgd"])
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    seen = []

    for fused in (True, False):
        opt = torch.optim.SGD([p], lr=1.0, fused=fused)
        step = opt.step
        monkeypatch.setattr(opt, "step", lambda: (seen.append(getattr(opt, "found_inf", None)), step()))
        before = p.detach().clone()
        module._step(opt, torch.tensor(1.0))
        torch.testing.assert_close(p.detach(), before, rtol=0, atol=0)  # skipped either way
        module._step(opt, torch.tensor(0.0))
        torch.testing.assert_close(p.detach(), before - 1.0)  # applied
        assert not hasattr(opt, "found_inf")
    # Fused: both steps reached the optimizer with the flag; plain: only the applied one, without it.
    assert [None if f is None else float(f) for f in seen] == [1.0, 0.0, None]


def test_adam_falls_back_where_torch_has_no_fused_kernel(monkeypatch):
    real = torch.optim.Adam

    def no_fused(params, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    opt = adam([torch.nn.Parameter(torch.ones(2))], lr=1e-3)
    assert isinstance(opt, real) and not opt.defaults.get("fused")


class NaNAfter:
    """``ssl_unsupervised_loss`` that turns NaN after ``n`` calls (a stand-in for a run that blows up)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.loss = n, 0, semi_supervised.ssl_unsupervised_loss

    def __call__(self, *args, **kwargs):
        self.calls += 1
        loss = self.loss(*args, **kwargs)
        return loss * float("nan") if self.calls > self.n else loss


SSL = ["--task", "semi_supervised", "--dataset", "digits", "--arch", "mlp", "--image_size", "8", "--g_width", "16",
       "--d_width", "16", "--z_dim", "8", "--batch_size", "50", "--labels_per_class", "5",
       "--metric_every_n_epochs", "0", "--logger", "csv", "--log_every_n_steps", "5"]


def test_semi_supervised_divergence_exits_3_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    out = ["--out_dir", str(tmp_path), "--run_name", "ssl"]
    assert run_cli(main, [*SSL, *out, "--max_epochs", "1"]) == 0
    ckpt = tmp_path / "ssl" / "checkpoints" / "last.ckpt"
    good = ckpt.read_bytes()
    monkeypatch.setattr(semi_supervised, "ssl_unsupervised_loss", NaNAfter(3))
    capsys.readouterr()
    assert run_cli(main, [*SSL, *out, "--resume", "last", "--max_epochs", "3"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("diverged: non-finite D loss") and "the last good checkpoint is kept" in err[-1], err
    assert ckpt.read_bytes() == good


def test_semi_supervised_skip_trains_on(tmp_path, monkeypatch):
    monkeypatch.setattr(semi_supervised, "ssl_unsupervised_loss", NaNAfter(3))
    out = ["--out_dir", str(tmp_path), "--run_name", "s"]
    assert run_cli(main, [*SSL, *out, "--max_steps", "8", "--on_nonfinite", "skip"]) == 0
    sd = torch.load(tmp_path / "s" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert int(sd["skipped_steps"]) == 5 and int(sd["d_steps"]) == 3 and int(sd["g_steps"]) == 8
    assert int(sd["ema.updates"]) == 8  # D's EMA counts every step for its warm-up but moved on 3
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_a_semi_supervised_checkpoint_from_before_the_guard_resumes(tmp_path, capsys):
    """Checkpoints written before the semi-supervised loop was guarded hold no skipped_steps: it starts at 0."""
    out = ["--out_dir", str(tmp_path), "--run_name", "old"]
    assert run_cli(main, [*SSL, *out, "--max_epochs", "1"]) == 0
    ckpt = tmp_path / "old" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    del state["state_dict"]["skipped_steps"]
    torch.save(state, ckpt)
    assert run_cli(main, [*SSL, *out, "--resume", "last", "--max_epochs", "2"]) == 0, capsys.readouterr().err
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    assert int(sd["skipped_steps"]) == 0 and int(sd["g_steps"]) == 2 * (1437 // 50)
