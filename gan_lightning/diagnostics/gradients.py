"""Generator gradient norms under the two costs of Arjovsky & Bottou 2017, computed on the side.

Used by the GradientNorms callback ("shadow" norms, whatever cost is trained) and by the
frozen-generator probe. Nothing here touches ``.grad``, BatchNorm running statistics or the
global RNG stream, so a training run is the same with or without these measurements.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from gan_lightning.core.losses import g_minimax_loss, g_nonsaturating_loss
from gan_lightning.torch_utils import rng_kept

# The two generator costs the paper compares (Thm 2.4 vs Thms 2.5-2.6).
PAPER_G_COSTS: dict[str, Callable[[Tensor], Tensor]] = {
    "minimax": g_minimax_loss,
    "nonsaturating": g_nonsaturating_loss,
}


def global_norm(tensors: list[Tensor | None]) -> Tensor:
    """L2 norm of all given tensors taken together (None entries are skipped); 0-dim tensor."""
    norms = [t.detach().float().norm(2) for t in tensors if t is not None]
    if not norms:
        return torch.zeros(())
    return torch.stack(norms).norm(2)


@contextmanager
def preserved_state(*modules: nn.Module) -> Iterator[None]:
    """Restore buffers (BatchNorm running stats, counters) and the RNG state after the block."""
    saved = [{k: v.clone() for k, v in m.named_buffers()} for m in modules]
    device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
    with rng_kept(device):
        try:
            yield
        finally:
            with torch.no_grad():
                for m, bufs in zip(modules, saved):
                    for k, v in m.named_buffers():
                        v.copy_(bufs[k])


def generator_grad_norms(
    generator: nn.Module,
    discriminate: Callable[[Tensor], Tensor],
    z: Tensor,
    costs: Mapping[str, Callable[[Tensor], Tensor]] = PAPER_G_COSTS,
    state_of: tuple[nn.Module, ...] = (),
) -> dict[str, float]:
    """||grad_theta cost(D(G_theta(z)))||_2 for each generator cost, on one batch of latents.

    G and D run once; each cost gets its own ``torch.autograd.grad`` over G's parameters only.

    Args:
        generator: G; its parameters are theta.
        discriminate: maps samples (B, ...) to logits (B,) (e.g. ``lambda x: module.discriminate(x)[0]``).
        z: (B, z_dim) latents.
        costs: name -> generator loss of logits.
        state_of: modules whose buffers must come back unchanged (G, D, the noise module).

    Returns:
        name -> gradient norm (float).
    """
    params = [p for p in generator.parameters() if p.requires_grad]
    with preserved_state(generator, *state_of), torch.enable_grad():
        logits = discriminate(generator(z))  # (B,)
        norms = shadow_norms_on_graph(logits, params, backward=lambda: None, costs=costs)  # nothing trained
    return {name: float(norm) for name, norm in norms.items()}


def shadow_norms_on_graph(
    fake_logits: Tensor,
    params: list[Tensor],
    backward: Callable[[], None],
    trained: str | None = None,
    costs: Mapping[str, Callable[[Tensor], Tensor]] = PAPER_G_COSTS,
) -> dict[str, Tensor]:
    """G's gradient norm under each cost, from the graph of G's own update step, then that update's backward.

    Reuses the forward pass of the training step: each cost other than ``trained`` gets one
    ``torch.autograd.grad`` from ``fake_logits`` to ``params`` (the graph is kept, no ``.grad``
    is touched), then ``backward()`` runs the step's own backward; the cost named ``trained``
    (when G's loss is exactly that cost) is read from the gradients it left in ``.grad``. No
    host sync: the norms stay 0-dim tensors on the device.

    Args:
        fake_logits: (B,) D's logits of G's samples, with G's graph.
        params: G's parameters that get gradients.
        backward: the training step's backward (``manual_backward(loss)``).
        trained: the name in ``costs`` that G's loss equals (its gradients are reused), or None.
        costs: name -> generator loss of logits.

    Returns:
        name -> gradient norm (0-dim tensor).
    """
    out: dict[str, Tensor] = {}
    for name, cost in costs.items():
        if name != trained:
            grads = torch.autograd.grad(cost(fake_logits), params, retain_graph=True, allow_unused=True)
            out[name] = global_norm(list(grads))
    backward()
    if trained is not None:
        out[trained] = global_norm([p.grad for p in params])
    return {name: out[name] for name in costs}
