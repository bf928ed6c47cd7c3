"""The frozen-generator probe of Arjovsky & Bottou 2017 (Figs. 1-3 and Section 3).

Protocol: freeze a generator G trained for some epochs, train a fresh discriminator D from
scratch against it with the BCE loss, and record at each D iteration D's loss and accuracy and
the norm of G's gradient under the two generator costs: the minimax E[log(1 - D(G(z)))], which
vanishes as D nears optimal (Thm 2.4), and -log D, which grows and gets noisy (Thms 2.5-2.6).
With instance noise eps ~ N(0, sigma^2 I) on D's real AND generated inputs (Sec. 3) D cannot
separate the two distributions perfectly and the minimax gradient survives.

Choices the paper leaves open (Arjovsky & Bottou 2017, Sec. 2.2 and Figs. 1-3, do not fix them):
- G runs in train mode, as it did while it was trained against D: BatchNorm normalizes with the
  statistics of each generated batch. ``probe`` works on a deep copy, so the caller's G, its mode
  and its running statistics are untouched; G's parameters are never updated.
- D is fresh (``make_discriminator()``), trained with Adam(lr, betas) on ``d_bce_loss`` plus the
  ``penalties`` of a remedy (R1, Roth et al.'s, WGAN-GP's; none by default), the
  learning rate decaying linearly to 0 over the ``d_iters`` updates by default; real and
  generated batches go through D separately, as in ``GAN._d_step``. Real batches are drawn
  uniformly with replacement from ``real_data``.
- The D recipe (:mod:`gan_lightning.diagnostics.probe_recipe`, built by :func:`probe_discriminator`) is
  chosen to approach the optimal D the theorems are about.
- Row t holds the loss and accuracy of D after t updates on the batch of its next update, and
  G's gradient norms against that same D (mean and std over ``grad_batches`` batches of fresh z).
  Gradient norms draw their latents and noise from a stream of their own, so measuring them, or
  how often, leaves D's training exactly the same. ``d_loss`` is the BCE loss alone, penalties
  left out, so that it means the same under every remedy.
- The probe has no G steps: a penalty annealed by G steps (Roth et al.'s gamma) acts at its
  starting strength, as instance noise acts at the constant ``noise_std``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from gan_lightning.diagnostics.gradients import PAPER_G_COSTS, generator_grad_norms
from gan_lightning.core.losses import d_bce_loss, says_fake, says_real
from gan_lightning.diagnostics.probe_recipe import LR_SCHEDULES, PROBE_LR, PROBE_SCHEDULE
from gan_lightning.torch_utils import rng_kept

WINDOW = 10  # D iterations in a running average, and in the "first"/"last" means of summarize()
ACCURACY_TARGET = 0.99
GRAD_KEYS = tuple(f"grad_norm_{cost}{stat}" for cost in PAPER_G_COSTS for stat in ("", "_std"))
CURVE_COLUMNS = ("remedy", "g_epochs", "noise_std", "iter", "d_loss", "d_accuracy", *GRAD_KEYS)
SUMMARY_KEYS = (
    "final_d_accuracy", f"iters_to_accuracy_{ACCURACY_TARGET}", "d_loss_first", "d_loss_last",
    "grad_norm_minimax_first", "grad_norm_minimax_last",
    "grad_norm_nonsaturating_first", "grad_norm_nonsaturating_last", "grad_norm_nonsaturating_std_last",
    "d_loss_drop", "grad_norm_minimax_drop", "grad_norm_minimax_decay_orders", "grad_norm_nonsaturating_growth",
)
# What a probe should show (issue: Figures 1-3 at every checkpoint): without noise D gets to the
# optimum, with the largest noise std it cannot, and the minimax gradient survives.
TARGETS_NO_NOISE = {"final_d_accuracy": 0.99, "d_loss_drop": 100.0, "grad_norm_minimax_drop": 100.0,
                    "grad_norm_nonsaturating_growth": 1.0}  # each >= the value
TARGETS_MOST_NOISE = {"final_d_accuracy": 0.9, "grad_norm_minimax_drop": 10.0}  # each < the value
MAX_REAL_EXAMPLES = 20_000  # real images held in memory for the probe (20k x 3 x 64 x 64 floats = 1 GB)



def _seed(seed: int, device: torch.device) -> None:
    """Seed the CPU stream and ``device``'s stream only (torch.manual_seed would touch every GPU)."""
    torch.random.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def real_tensor(dataset: Any, max_examples: int = MAX_REAL_EXAMPLES, seed: int = 0) -> Tensor:
    """The ``x`` of a data set of ``(x, y)`` pairs as one tensor (N, *data_shape).

    A data set larger than ``max_examples`` gives a random subset of that size (fixed ``seed``).
    """
    n = len(dataset)
    keep = torch.arange(n)
    if n > max_examples:
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_examples].sort().values
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:  # a TensorDataset: slice, no per-example loop
        return tensors[0][keep]
    return torch.stack([dataset[int(i)][0] for i in keep])


def d_accuracy(real_logits: Tensor, fake_logits: Tensor) -> float:
    """Fraction of samples D classifies right (real: logit > 0, generated: logit <= 0)."""
    right = says_real(real_logits).sum() + says_fake(fake_logits).sum()
    return float(right) / (real_logits.numel() + fake_logits.numel())


class _Players(nn.Module):
    """What a penalty reads (``core.penalties.TwoPlayers``): G, D, D's one call site (instance noise
    included) and a G-step count that stays 0."""

    g_step_count = 0

    def __init__(self, generator: nn.Module, discriminator: nn.Module, noise: nn.Module) -> None:
        super().__init__()
        self.generator, self.discriminator, self.noise = generator, discriminator, noise

    def discriminate(self, x: Tensor) -> tuple[Tensor, None]:
        return self.discriminator(self.noise(x)), None


def _grad_norm_stats(
    generator: nn.Module, discriminate: Callable[[Tensor], Tensor], state_of: tuple[nn.Module, ...],
    batch_size: int, grad_batches: int, stream: torch.Generator, device: torch.device,
) -> dict[str, float]:
    """Mean and sample std (0 for one batch) of G's gradient norm per cost over fresh batches of z."""
    norms: dict[str, list[float]] = {cost: [] for cost in PAPER_G_COSTS}
    for _ in range(grad_batches):
        z = torch.randn(batch_size, generator.z_dim, generator=stream).to(device)  # (B, z_dim)
        with rng_kept(device):  # the instance noise of this measurement comes from `stream` too
            _seed(int(torch.randint(2**62, (), generator=stream)), device)
            for cost, value in generator_grad_norms(generator, discriminate, z, state_of=state_of).items():
                norms[cost].append(value)
    out = {}
    for cost, values in norms.items():
        t = torch.tensor(values, dtype=torch.float64)
        out[f"grad_norm_{cost}"] = float(t.mean())
        out[f"grad_norm_{cost}_std"] = float(t.std()) if len(values) > 1 else 0.0
    return out


def probe(
    generator: nn.Module,
    real_data: Tensor,
    make_discriminator: Callable[[], nn.Module],
    *,
    penalties: Sequence[nn.Module] = (),
    d_iters: int = 4000,
    noise_std: float = 0.0,
    batch_size: int = 64,
    lr: float = PROBE_LR,
    betas: tuple[float, float] = (0.5, 0.999),
    lr_schedule: str = PROBE_SCHEDULE,
    grad_batches: int = 4,
    grad_every: int = 1,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "probe",
) -> list[dict[str, Any]]:
    """Train a fresh D against a frozen G and record what the paper plots (module docstring).

    Args:
        generator: G, with a ``z_dim`` attribute; copied, never changed.
        real_data: (N, *data_shape) real samples, on any device.
        make_discriminator: returns a fresh D mapping (B, *data_shape) to logits (B,); called once,
            after seeding, so D's initialization depends only on ``seed``.
        penalties: fresh penalty modules (``core.penalties``) called as ``p(players, real, fake)``
            and added to D's loss; any state they keep (a lazy-regularization count) starts here.
        d_iters: D updates.
        noise_std: std of the Gaussian instance noise on both of D's inputs (0: none).
        batch_size: real and generated samples per D update and per gradient-norm batch.
        lr: D's Adam learning rate (at the first update).
        betas: D's Adam betas.
        lr_schedule: "linear" (to 0 after ``d_iters`` updates) or "constant".
        grad_batches: batches of z per gradient-norm measurement.
        grad_every: measure gradient norms every this many iterations (and at the last one).
        seed: seeds D's initialization, the batches and the noise; the caller's RNG is restored.
        device: where to run; default G's device.
        progress: show a tqdm bar over the D iterations.
        desc: the bar's label.

    Returns:
        One dict per iteration: ``iter``, ``d_loss``, ``d_accuracy`` and the ``GRAD_KEYS``
        (None on iterations without a measurement).

    Raises:
        ValueError: a count < 1, a negative noise std, an unknown schedule or empty real data.
    """
    from tqdm.auto import tqdm

    from gan_lightning.core.noise import Constant, InstanceNoise

    for name, value in (("d_iters", d_iters), ("batch_size", batch_size), ("grad_batches", grad_batches),
                        ("grad_every", grad_every), ("len(real_data)", len(real_data))):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}")
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    rows: list[dict[str, Any]] = []
    with rng_kept(device), torch.enable_grad():
        _seed(seed, device)
        g = copy.deepcopy(generator).to(device).train().requires_grad_(True)
        d = make_discriminator().to(device).train()
        noise = InstanceNoise(Constant(noise_std)).to(device)
        players = _Players(g, d, noise)
        penalties = [p.to(device) for p in penalties]
        d_opt = torch.optim.Adam(d.parameters(), lr=lr, betas=betas)
        decay = (lambda t: 1.0 - t / d_iters) if lr_schedule == "linear" else (lambda t: 1.0)
        d_sched = torch.optim.lr_scheduler.LambdaLR(d_opt, decay)
        stream = torch.Generator().manual_seed(seed + 1)  # gradient-norm latents and noise

        def discriminate(x: Tensor) -> Tensor:  # the one call site of D: noise on every input
            return players.discriminate(x)[0]

        for t in tqdm(range(d_iters), desc=desc, disable=None if progress else True, leave=False,
                      dynamic_ncols=True):  # disable=None: no bar when stderr is not a terminal (a log file)
            row: dict[str, Any] = dict.fromkeys(GRAD_KEYS)
            if t % grad_every == 0 or t == d_iters - 1:
                row.update(_grad_norm_stats(g, discriminate, (d, noise), batch_size, grad_batches, stream, device))
            idx = torch.randint(len(real_data), (batch_size,), device=real_data.device)
            real = real_data[idx].to(device)  # (B, *data_shape)
            with torch.no_grad():
                fake = g(torch.randn(batch_size, g.z_dim, device=device))  # (B, *data_shape)
            real_logits, fake_logits = discriminate(real), discriminate(fake)  # (B,), (B,)
            loss = d_bce_loss(real_logits, fake_logits)
            penalty = sum((p(players, real, fake) for p in penalties), loss.new_zeros(()))
            d_opt.zero_grad(set_to_none=True)
            (loss + penalty).backward()
            d_opt.step()
            d_sched.step()
            accuracy = d_accuracy(real_logits, fake_logits)
            rows.append({"iter": t, "d_loss": float(loss.detach()), "d_accuracy": accuracy, **row})
    return rows


def running_mean(values: Sequence[float], window: int = WINDOW) -> list[float]:
    """Trailing running mean; the first ``window - 1`` entries average what there is so far."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def summarize(rows: Sequence[dict[str, Any]], window: int = WINDOW) -> dict[str, Any]:
    """Summary numbers of one probe run (one G snapshot, one noise std).

    "first" is the mean over the first ``window`` D iterations, "last" over the last ``window``
    (over the iterations that have the value, for the sparse gradient norms).
    ``final_d_accuracy`` is the mean accuracy over the last ``window`` iterations;
    ``iters_to_accuracy_0.99`` the first iteration at which the running mean of the accuracy over
    a full window of ``window`` iterations reaches 0.99 (None if it never does).

    Args:
        rows: the output of :func:`probe`, in iteration order.
        window: iterations per running mean and per first/last mean.

    Returns:
        A dict with exactly the ``SUMMARY_KEYS``.
    """
    if not rows:
        raise ValueError("summarize needs at least one row")
    first, last = rows[:window], rows[-window:]
    smooth = running_mean([r["d_accuracy"] for r in rows], window)
    reached = next((rows[i]["iter"] for i in range(window - 1, len(rows))
                    if smooth[i] >= ACCURACY_TARGET - 1e-9), None)  # 1e-9: float sums of 0.99
    out = {
        "final_d_accuracy": _mean(last, "d_accuracy"),
        f"iters_to_accuracy_{ACCURACY_TARGET}": reached,
        "d_loss_first": _mean(first, "d_loss"),
        "d_loss_last": _mean(last, "d_loss"),
    }
    for cost in PAPER_G_COSTS:
        out[f"grad_norm_{cost}_first"] = _mean(first, f"grad_norm_{cost}")
        out[f"grad_norm_{cost}_last"] = _mean(last, f"grad_norm_{cost}")
    out["grad_norm_nonsaturating_std_last"] = _mean(last, "grad_norm_nonsaturating_std")
    out["d_loss_drop"] = _ratio(out["d_loss_first"], out["d_loss_last"])
    out["grad_norm_minimax_drop"] = _ratio(out["grad_norm_minimax_first"], out["grad_norm_minimax_last"])
    drop = out["grad_norm_minimax_drop"]
    out["grad_norm_minimax_decay_orders"] = math.log10(drop) if drop is not None and 0 < drop < math.inf else None
    out["grad_norm_nonsaturating_growth"] = _ratio(out["grad_norm_nonsaturating_last"],
                                                   out["grad_norm_nonsaturating_first"])
    return {k: out[k] for k in SUMMARY_KEYS}


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b; None when either is missing, inf when only b is 0."""
    if a is None or b is None:
        return None
    if b == 0:
        return math.inf if a > 0 else None
    return a / b


def check_targets(checkpoints: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whether each G snapshot shows what the paper shows, from the ``summary.json`` entries.

    Without noise (std 0): every :data:`TARGETS_NO_NOISE` value reached (>=); at the largest noise
    std of the snapshot: every :data:`TARGETS_MOST_NOISE` value stayed under (<). A missing value
    counts as missed.

    Returns:
        One dict per snapshot: ``g_epochs``, ``no_noise`` and ``most_noise`` (name -> bool, or
        None when there is no such run), ``most_noise_std`` and ``met`` (all of them true).
    """
    out = []
    for epochs in sorted({c["g_epochs"] for c in checkpoints}):
        runs = {c["noise_std"]: c for c in checkpoints if c["g_epochs"] == epochs}
        clean, noisy = runs.get(0.0), runs[max(runs)] if max(runs) > 0 else None
        no_noise = {k: clean[k] is not None and clean[k] >= v for k, v in TARGETS_NO_NOISE.items()} if clean else None
        most = {k: noisy[k] is not None and noisy[k] < v for k, v in TARGETS_MOST_NOISE.items()} if noisy else None
        met = no_noise is not None and most is not None and all(no_noise.values()) and all(most.values())
        out.append({"g_epochs": epochs, "no_noise": no_noise, "most_noise_std": max(runs) if noisy else None,
                    "most_noise": most, "met": met})
    return out
