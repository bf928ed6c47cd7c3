"""A training step reads nothing from the device between two log steps (on a GPU each read waits for
every queued kernel): ``aten::_local_scalar_dense`` (``.item()``, ``bool()``, ``int()`` of a tensor)
is counted over the steps that are not log steps, with the run's default diagnostics on."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gan_lightning.build import build_datamodule, build_diagnostics, build_module
from gan_lightning.config import TrainConfig, resolve

LOG_EVERY = 5
BATCHES = 7  # per epoch, 2 epochs: log steps at batches 5 and 10 (epoch 1, batch 3)
IMAGES = dict(dataset="digits", image_size=28, g_width=8, d_width=8, batch_size=32, log_every_n_steps=LOG_EVERY)
CASES = {
    "default": {},
    "wgan_gp_n_critic_5": dict(loss="wasserstein", gp_weight=10.0, n_critic=5),
    "weight_clip": dict(loss="wasserstein", weight_clip=0.01),
    **{f"noise_{s}": dict(noise_std=0.3, noise_schedule=s, noise_anneal_steps=6)
       for s in ("constant", "linear", "exponential", "cosine", "step")},
    "noise_adaptive": dict(noise_std=0.1, noise_schedule="adaptive"),
    "feature_matching": dict(g_objective="feature_matching"),
    "minibatch_discrimination": dict(minibatch_discrimination=True, mbd_kernels=8, mbd_dim=3),
    "d_spectral_norm": dict(d_spectral_norm=True),  # the power iterations and the sn/* SVDs
    "historical_averaging": dict(historical_averaging=0.1),
    "r1_lazy_r2": dict(r1_weight=10.0, r2_weight=1.0, reg_every=3),
    "roth_exponential": dict(roth_gamma=2.0, roth_anneal_steps=6),
    "virtual_batch_norm": dict(g_norm="vbn", vbn_ref_size=16),
    "label_smoothing_on_nonfinite_skip": dict(label_smoothing=0.9, on_nonfinite="skip"),
    "g_ema_on_nonfinite_skip": dict(g_ema=0.99, on_nonfinite="skip"),  # the EMA's lerp weight stays on the device
    "semi_supervised_ema": dict(task="semi_supervised", arch="improved_mnist", labels_per_class=5, lr_g=3e-3,
                                lr_d=3e-3, d_width=64),
}


class CountSyncs(TorchDispatchMode):
    """Counts reads of tensor values by the host: ``_local_scalar_dense`` and ``Tensor.tolist`` (which
    on the CPU reads memory without dispatching an op, and on a GPU waits for it like ``.item()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __enter__(self):
        self._tolist = torch.Tensor.tolist
        mode = self

        def tolist(tensor, *args, **kwargs):
            mode.count += 1
            return mode._tolist(tensor, *args, **kwargs)
        torch.Tensor.tolist = tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


class Open(L.Callback):
    """First callback: starts counting at the batch start of a step that is not a log step."""

    def __init__(self) -> None:
        self.mode: CountSyncs | None = None
        self.counted: list[int] = []
        self.syncs = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % LOG_EVERY != 0:
            self.mode = CountSyncs()
            self.mode.__enter__()
            self.counted.append(batch_idx)


class Close(L.Callback):
    """Last callback: stops counting at the batch end, after every other callback's hook."""

    def __init__(self, opened: Open) -> None:
        self.opened = opened

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        mode = self.opened.mode
        if mode is not None:
            mode.__exit__(None, None, None)
            self.opened.syncs += mode.count
            self.opened.mode = None


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_device_read_between_log_steps(case):
    cfg = dataclasses.replace(TrainConfig(**IMAGES), **CASES[case])
    if cfg.task == "semi_supervised":
        cfg = dataclasses.replace(cfg, image_size=28)
    cfg = resolve(cfg)
    torch.manual_seed(0)
    dm = build_datamodule(cfg)
    dm.check()
    module = build_module(cfg, dm.data_shape)
    opened = Open()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=BATCHES, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=LOG_EVERY, num_sanity_val_steps=0,
                        callbacks=[opened, *build_diagnostics(cfg), Close(opened)])
    trainer.fit(module, datamodule=dm)
    assert len(opened.counted) == 2 * BATCHES - 2  # every step but the two log steps was counted
    assert opened.syncs == 0
