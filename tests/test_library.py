"""The toolkit as a library: its callbacks on a LightningModule written here, in the style of
Lightning's own GAN example, that knows nothing of this package but the callbacks' protocol
(gan_lightning/callbacks/__init__.py)."""

from __future__ import annotations

import math
import subprocess
import sys

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gan_lightning import DiscriminatorAccuracy, GradientNorms, MetricsCallback
from gan_lightning.metrics.fidelity import latents
from gan_lightning.metrics.mode_coverage import dataset_mode_coverage
from gan_lightning.data.datasets import DATASETS


class RingGAN(L.LightningModule):
    """A plain non-saturating GAN on 2-D points, manual optimization, two MLPs."""

    def __init__(self, z_dim: int = 8, width: int = 64) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.z_dim = z_dim
        self.generator = nn.Sequential(nn.Linear(z_dim, width), nn.ReLU(), nn.Linear(width, 2))
        self.body = nn.Sequential(nn.Linear(2, width), nn.LeakyReLU(0.2))
        self.discriminator = nn.Sequential(self.body, nn.Linear(width, 1))

    # -- the protocol ----------------------------------------------------------------------
    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=self.device)

    def discriminate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.discriminator[1](features).squeeze(1), features

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z.to(self.device))

    # -- training ----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        (real,) = batch
        d_opt, g_opt = self.optimizers()
        fake = self.generator(self.sample_z(len(real)))
        real_logits, _ = self.discriminate(real)
        fake_logits, _ = self.discriminate(fake.detach())
        d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()
        g_logits, _ = self.discriminate(fake)
        g_loss = F.softplus(-g_logits).mean()
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.log_dict({"loss/d": d_loss, "loss/g": g_loss})
        return {"real_logits": real_logits.detach(), "fake_logits": fake_logits.detach()}

    def configure_optimizers(self):
        return [torch.optim.Adam(self.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999)),
                torch.optim.Adam(self.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))]


def test_the_callbacks_measure_a_module_written_without_the_package(tmp_path):
    torch.manual_seed(0)
    points = DATASETS["ring"].load("train", 0, "data", False).tensors[0][:2048]  # (2048, 2)
    loader = DataLoader(TensorDataset(points), batch_size=64, shuffle=True, drop_last=True)
    module = RingGAN()
    norms = GradientNorms(every_n_steps=4, shadow_every_n_steps=8)
    metrics = MetricsCallback(every_n_epochs=1, num_samples=500, dataset="ring", progress=False)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=2, log_every_n_steps=4, logger=CSVLogger(tmp_path, name="", version=""),
        callbacks=[DiscriminatorAccuracy(every_n_steps=4), norms, metrics],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, loader)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for key in ("d/acc", "d/acc_real", "d/acc_fake"):
        assert 0.0 <= logged[key] <= 1.0, key
    assert -math.log(2) < logged["d/jsd_estimate"] <= math.log(2)
    for key in ("grad_norm/d", "grad_norm/g"):
        assert math.isfinite(logged[key]) and logged[key] > 0, key
    # The shadow norms of both paper costs, measured after the batch (the module has no g_backward).
    assert set(norms.last_shadow) == {"grad_norm/g_minimax", "grad_norm/g_nonsaturating"}
    assert all(math.isfinite(v) and v > 0 for v in norms.last_shadow.values())
    # The metric is the module's own samples scored: the same latents through its generate().
    expected = dataset_mode_coverage(module.generate(latents(0, 0, 500, module.z_dim)), "ring")
    assert logged["modes_covered/500"] == expected["modes_covered"]
    assert logged["high_quality/500"] == expected["high_quality"]


def test_the_package_exports_its_library_lazily():
    code = ("import sys, gan_lightning as g; assert 'torch' not in sys.modules; "
            "from gan_lightning import GAN, GradientNorms, d_bce_loss, InstanceNoise, MinibatchDiscrimination; "
            "import gan_lightning.modules.gan as m; assert GAN is m.GAN; print(len(g.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 40
