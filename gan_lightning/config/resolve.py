"""From the config a user gave (``auto`` values allowed) to the config a run uses.

:func:`resolve` is the one place where ``auto`` and other "work it out" values get their value, the
hardware's included (devices, strategy): it returns a frozen :class:`ResolvedConfig`, the only config
that validation and the builders take, so an unresolved config cannot reach them. The run calls it once,
right after its folder is chosen; ``config.yaml``, ``--dry_run`` and checkpoints hold its flags. Resolving
a resolved config changes nothing, so ``auto`` stays accepted on the command line, in YAML files, in
sweeps and on resume.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from gan_lightning.config.flags import TrainConfig, check_name
from gan_lightning.errors import DataError, UsageError

AUTO = "auto"
NO_EXTRACTOR = "none"  # --metric_extractor of 2-D point data: mode coverage needs no feature extractor
WHOLE_RUN = -1  # --noise_anneal_steps / --roth_anneal_steps: anneal over the run's G steps
DDP_GAN = "ddp_gan"  # --strategy auto with several processes: gradients averaged per optimizer (trainer/ddp.py)
SINGLE_DEVICE = "single_device"  # --strategy auto with one process: Lightning's own single-device strategy
AUTO_STRATEGIES = (DDP_GAN, SINGLE_DEVICE)  # what --strategy auto resolves to


@dataclass(frozen=True)
class ResolvedConfig(TrainConfig):
    """A TrainConfig with every ``auto`` worked out (only :func:`resolve` makes one), plus what the
    builders need that is not a flag. ``strategy`` holds the strategy the run uses.

    Its ``to_dict`` holds the flags only (TrainConfig's): ``config.yaml``, checkpoints and the W&B
    config keep those, and resolving them again gives the rest.
    """

    data_kind: str = "images"  # of --dataset: "images", or "points" (2-D)
    num_outputs: int = 1  # D's logits: 1 for a GAN, K class logits for the semi-supervised K+1 discriminator
    cuda: bool = False  # trains on CUDA GPUs: --accelerator gpu/cuda, or auto with a GPU present
    devices_arg: Any = AUTO  # --devices as Trainer(devices=...) takes it: auto, a count or a tuple of ids
    processes: int = 1  # training processes: devices per node (auto: every visible GPU with CUDA, else 1) x nodes


def resolve(cfg: TrainConfig) -> ResolvedConfig:
    """The resolved copy of ``cfg``: every value that depends on others filled in.

    - ``arch`` auto: dcgan for images, mlp for 2-D points;
    - ``d_norm`` auto: batch for dcgan, none otherwise and with ``d_spectral_norm`` (a norm layer would cancel it);
    - ``g_objective`` auto: feature_matching for the semi-supervised task, else adversarial;
    - ``label_seed`` -1: the run's ``seed``;
    - ``metric_extractor``, ``metric_split``, ``metric_num_samples``: as
      :func:`gan_lightning.metrics.keys.metric_settings` works them out (``none`` for the extractor of points);
    - ``roth_final_gamma`` -1: 0.01 * ``roth_gamma`` (Roth et al. 2017's gamma_0 * 0.01^(t/T));
    - ``noise_anneal_steps`` and ``roth_anneal_steps`` -1: the run's G steps (:func:`run_g_steps`),
      where that annealing is on (an annealed noise schedule; ``roth_gamma`` > 0 with a schedule
      other than constant); left at -1 where it is off, so a resume that turns it on gets its own run's length;
    - ``strategy`` auto: ddp_gan for several processes, else single_device (what Lightning's auto picks).

    A ``--devices`` that is not a number or a list of them counts as one device here; validation refuses it.

    Raises:
        UsageError: an unknown data set or arch (what resolving looks up); a run's length that needs
            the size of a data set that is not there.
    """
    from gan_lightning.core.penalties import ROTH_FINAL_FACTOR
    from gan_lightning.data.datasets import DATASETS
    from gan_lightning.metrics.keys import metric_settings
    from gan_lightning.networks import NETWORKS

    check_name("dataset", cfg.dataset, list(DATASETS))
    check_name("arch", cfg.arch, [AUTO, *NETWORKS])
    spec = DATASETS[cfg.dataset]
    arch = cfg.arch if cfg.arch != AUTO else ("mlp" if spec.kind == "points" else "dcgan")
    metrics = metric_settings(cfg.dataset, cfg.metric_extractor, cfg.metric_num_samples, cfg.metric_split)
    cuda = uses_cuda(cfg)
    devices_arg, per_node = _devices(cfg.devices, cuda)
    flags = cfg.to_dict()
    flags.update(
        arch=arch,
        d_norm=(cfg.d_norm if cfg.d_norm != AUTO
                else "batch" if arch == "dcgan" and not cfg.d_spectral_norm else "none"),
        g_objective=(cfg.g_objective if cfg.g_objective != AUTO
                     else "feature_matching" if cfg.task == "semi_supervised" else "adversarial"),
        label_seed=cfg.seed if cfg.label_seed < 0 else cfg.label_seed,
        metric_extractor=metrics.extractor or NO_EXTRACTOR,
        metric_split=metrics.split,
        metric_num_samples=metrics.num_samples,
        roth_final_gamma=ROTH_FINAL_FACTOR * cfg.roth_gamma if cfg.roth_final_gamma == -1 else cfg.roth_final_gamma,
        strategy=cfg.strategy if cfg.strategy != AUTO else DDP_GAN if per_node * cfg.num_nodes > 1 else SINGLE_DEVICE,
    )
    resolved = ResolvedConfig(
        **flags, data_kind=spec.kind, num_outputs=spec.num_classes if cfg.task == "semi_supervised" else 1,
        cuda=cuda, devices_arg=devices_arg, processes=max(1, per_node) * max(1, cfg.num_nodes),
    )
    return dataclasses.replace(  # last: a run's length needs its processes
        resolved,
        noise_anneal_steps=_anneal_steps(resolved, "noise_anneal_steps", noise_annealed(resolved)),
        roth_anneal_steps=_anneal_steps(resolved, "roth_anneal_steps", roth_annealed(resolved)),
    )


def uses_cuda(cfg: TrainConfig) -> bool:
    """Whether the run trains on CUDA GPUs: ``--accelerator gpu/cuda``, or auto with a GPU present."""
    if cfg.accelerator in ("gpu", "cuda"):
        return True
    if cfg.accelerator != AUTO:
        return False
    import torch

    return torch.cuda.is_available()


def _devices(devices: str, cuda: bool) -> tuple[Any, int]:
    """(``--devices`` as Trainer(devices=...) takes it, devices per node): auto counts every visible GPU
    with CUDA, else 1; a malformed value is kept as it is and counts 1."""
    if devices == AUTO:
        import torch

        return AUTO, torch.cuda.device_count() if cuda and torch.cuda.is_available() else 1
    try:
        ids = tuple(int(p) for p in devices.split(",") if p.strip())
    except ValueError:
        return devices, 1
    if not ids:
        return devices, 1
    return (ids, len(ids)) if len(ids) > 1 else (ids[0], ids[0])


def _annealed(schedule: str) -> bool:
    from gan_lightning.core.noise import SCHEDULES

    return hasattr(SCHEDULES.get(schedule), "anneal_steps")  # linear, exponential, cosine, step


def noise_annealed(cfg: TrainConfig) -> bool:
    """Whether instance noise is on with a schedule that moves over ``noise_anneal_steps``."""
    return noise_enabled(cfg) and _annealed(cfg.noise_schedule)


def roth_annealed(cfg: TrainConfig) -> bool:
    """Whether Roth et al.'s gamma is on and annealed over ``roth_anneal_steps``."""
    return cfg.roth_gamma > 0 and _annealed(cfg.roth_schedule)


def _anneal_steps(cfg: ResolvedConfig, key: str, used: bool) -> int:
    value = getattr(cfg, key)
    if value != WHOLE_RUN or not used:
        return value
    try:
        steps = run_g_steps(cfg)
    except DataError:
        if not cfg.download:
            raise  # the run itself would stop on the same line
        raise UsageError(f"--{key} -1 (the whole run) needs the batches per epoch of --dataset {cfg.dataset}, "
                         f"which is not downloaded yet; give --{key} N or --max_steps N, or download it "
                         f"first") from None
    return steps if steps > 0 else value  # no limit at all: validation refuses the run


def run_g_steps(cfg: ResolvedConfig) -> int:
    """The G steps a run of ``cfg`` trains in all (from G step 0; a resumed run included): ``max_steps``,
    or ``max_epochs`` x batches per epoch where that is fewer; -1 without either limit.

    A GAN batch makes one G step (its ``n_critic`` D steps come from the same batch). Batches per
    epoch: the training split's examples per process (DDP splits them), in full batches (the loader
    drops a partial last one). Loads the training split (not downloading it) when ``max_epochs`` bounds the run.

    Raises:
        DataError: the training split is needed and cannot be read.
    """
    by_epochs = -1
    if cfg.max_epochs > 0:
        per_process = -(-_train_size(cfg.dataset, cfg.image_size, cfg.data_root) // cfg.processes)
        by_epochs = cfg.max_epochs * max(1, per_process // cfg.batch_size)
    if cfg.max_steps > 0 and (by_epochs < 0 or cfg.max_steps < by_epochs):
        return cfg.max_steps
    return by_epochs


@functools.lru_cache(maxsize=8)
def _train_size(dataset: str, image_size: int, data_root: str) -> int:
    from gan_lightning.data.datasets import DATASETS

    return len(DATASETS[dataset].load("train", image_size, data_root, False))  # type: ignore[arg-type]


def noise_enabled(cfg: TrainConfig) -> bool:
    """Whether D's inputs get instance noise: a schedule other than none, and a sigma or the adaptive one."""
    return cfg.noise_schedule != "none" and (cfg.noise_std > 0 or cfg.noise_schedule == "adaptive")
