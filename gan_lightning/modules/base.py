"""What every GAN system shares: latents, sampling in eval mode, and the two Adam optimizers."""

from __future__ import annotations

import torch
from torch import Tensor

from gan_lightning.torch_utils import eval_mode


class GeneratorSystem:
    """Mixed into a LightningModule that has ``generator``, ``discriminator``, ``z_dim``,
    a ``fixed_z`` buffer (num_fixed, z_dim), ``lr_g``, ``lr_d`` and ``betas``."""

    def sample_z(self, n: int) -> Tensor:
        """Draw n latent vectors z ~ N(0, I), shape (n, z_dim), on the module's device."""
        return torch.randn(n, self.z_dim, device=self.fixed_z.device)

    @torch.no_grad()
    def generate(self, z: Tensor | None = None, n: int | None = None) -> Tensor:
        """Samples from G in eval mode (the mode G was in is restored).

        Args:
            z: (B, z_dim) latents; default the fixed latents, or ``n`` fresh ones.
            n: number of fresh samples when z is None.
        """
        if z is None:
            z = self.fixed_z if n is None else self.sample_z(n)
        with eval_mode(self.generator):
            return self.generator(z)

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[d_opt, g_opt]: Adam for each player, in that order."""
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d, betas=self.betas)
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=self.betas)
        return [d_opt, g_opt]
