"""The one flat, typed training config: its fields are the CLI flags and the W&B config keys.

Strings become objects here and only here (``build_*`` functions); an unknown name raises a
UsageError that lists the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence, get_type_hints

from gan_lightning.errors import UsageError

# Loss names that stand for a loss and the settings it is used with, so that one value of a W&B
# grid selects them all; flags given as well win over the alias's settings.
LOSS_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "wasserstein_gp": ("wasserstein", {"gp_weight": 10.0, "n_critic": 5}),  # WGAN-GP (Gulrajani et al. 2017)
}
LOGGERS = ("csv", "wandb", "tensorboard", "none")
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every training option. Field name = CLI flag (``--name=value``) = W&B config key."""

    # data
    dataset: str = _f("mnist5k", "data set: a built-in one (ring, grid, digits, mnist5k) or a torchvision one")
    data_root: str = _f("data", "folder of downloaded/torchvision data sets (and of --dataset folder)")
    download: bool = _f(False, "download the data set into --data_root if it is missing (needs internet)")
    image_size: int = _f(32, "image height = width (dcgan: 28, 32 or 64)")
    batch_size: int = _f(64, "images per batch and per device")
    num_workers: int = _f(0, "DataLoader worker processes (0: load in the main process)")
    # networks
    arch: str = _f("auto", "network family: auto (dcgan for images, mlp for points), dcgan, mlp, "
                   "improved_mnist (Salimans et al. 2016 MNIST nets, 28x28)")
    z_dim: int = _f(100, "latent dimension of G's input z ~ N(0, I)")
    g_width: int = _f(64, "G width (base channels for dcgan, hidden units for mlp)")
    d_width: int = _f(64, "D width (base channels for dcgan, hidden units for mlp)")
    g_norm: str = _f("batch", "normalization in G: batch, vbn (virtual batch norm) or none")
    vbn_ref_size: int = _f(64, "size of the fixed reference batch of --g_norm vbn")
    d_norm: str = _f("auto", "normalization in D: auto (batch for dcgan, none for mlp), batch, layer, none")
    # objective
    loss: str = _f("nonsaturating", "GAN objective: minimax, nonsaturating, wasserstein, hinge, least_squares, "
                   "or wasserstein_gp (= wasserstein --gp_weight 10 --n_critic 5)")
    n_critic: int = _f(1, "D updates per G update (5 is usual for wasserstein)")
    gp_weight: float = _f(0.0, "weight of the WGAN-GP gradient penalty on D (0: off; 10 is usual)")
    weight_clip: float = _f(0.0, "clip D's weights to [-c, c] after each step (0: off; WGAN uses 0.01)")
    # instance noise on D's inputs (Arjovsky & Bottou 2017, sec. 3)
    noise_std: float = _f(0.0, "std of Gaussian noise added to every D input, real and fake (0: off)")
    noise_schedule: str = _f("constant", "how sigma moves: none (no noise), constant, linear, exponential, cosine, "
                             "step, adaptive")
    noise_final_std: float = _f(0.0, "sigma reached after --noise_anneal_steps (annealed schedules)")
    noise_anneal_steps: int = _f(10000, "generator steps over which sigma is annealed")
    noise_target_acc: float = _f(0.6, "adaptive schedule: D accuracy on real data that sigma is tuned to hold")
    # Salimans et al. 2016 techniques
    g_objective: str = _f("auto", "what G minimizes: adversarial (the G loss of --loss), feature_matching, or auto "
                          "(feature_matching for --task semi_supervised, else adversarial)")
    fm_distance: str = _f("l2", "feature matching distance of batch means: l2 (MNIST reference) or l1 (CIFAR reference)")
    fm_layer: str = _f("", "feature matching: D submodule whose output is matched, e.g. body.4 (empty: penultimate)")
    minibatch_discrimination: bool = _f(False, "add minibatch discrimination to D's head (Salimans et al. 2016, sec. 3.2)")
    mbd_kernels: int = _f(100, "minibatch discrimination: number of kernels B")
    mbd_dim: int = _f(5, "minibatch discrimination: dimension C of each kernel")
    historical_averaging: float = _f(0.0, "weight of historical averaging on both players' parameters (0: off)")
    label_smoothing: float = _f(1.0, "one-sided label smoothing: D's target for real data, e.g. 0.9 (1.0: off; BCE losses)")
    # semi-supervised classification with a K+1-class D (Salimans et al. 2016, sec. 5)
    task: str = _f("gan", "what to train: gan, or semi_supervised (D classifies K classes + generated; "
                   "logs ssl/test_error)")
    labels_per_class: int = _f(10, "semi_supervised: labeled training examples per class (10: 100 labels on digits)")
    label_seed: int = _f(-1, "semi_supervised: seed of the labeled subset (-1: --seed, so seeds draw different labels)")
    unlabeled: str = _f("all", "semi_supervised: unlabeled set: all training images (as the reference code) or rest")
    unsup_weight: float = _f(0.5, "semi_supervised: weight of each unsupervised term of D's loss (reference code 0.5)")
    ema_decay: float = _f(0.999, "semi_supervised: decay of the average of D's weights that ssl/test_error uses (0: off)")
    lr_decay_steps: int = _f(0, "semi_supervised: both learning rates fall linearly to 0 at this D step (0: constant)")
    # optimization
    lr_g: float = _f(2e-4, "Adam learning rate of G")
    lr_d: float = _f(2e-4, "Adam learning rate of D")
    beta1: float = _f(0.5, "Adam beta1")
    beta2: float = _f(0.999, "Adam beta2")
    adam_eps: float = _f(1e-8, "Adam epsilon of both players (the improved-gan reference code's 1e-8 under the "
                               "square root acts as about 1e-4 here)")
    max_epochs: int = _f(20, "epochs to train (-1: no limit, then set --max_steps)")
    max_steps: int = _f(-1, "generator steps to train (-1: no limit); stops before --max_epochs if reached")
    seed: int = _f(0, "random seed of the run")
    on_nonfinite: str = _f("stop", "a non-finite loss: stop (exit 3, last good checkpoint kept) or skip the update")
    # hardware
    accelerator: str = _f("auto", "cpu, gpu, auto, ...")
    devices: str = _f("auto", "devices per node: a number, a list like 0,1, or auto")
    num_nodes: int = _f(1, "number of nodes")
    strategy: str = _f("auto", "Lightning strategy; auto picks ddp_find_unused_parameters_true for several devices")
    precision: str = _f("32-true", "32-true, 16-mixed, bf16-mixed, ...")
    # logging and outputs
    logger: str = _f("csv", "csv (metrics.csv only), wandb or tensorboard (each also writes metrics.csv), none")
    project: str = _f("gan_lightning", "W&B project")
    run_name: str = _f("", "run folder name under --out_dir (default: <dataset>-<arch>-<loss>-<time>)")
    out_dir: str = _f("runs", "folder holding one sub-folder per run")
    log_every_n_steps: int = _f(10, "log metrics every N training batches")
    diagnostics: bool = _f(True, "log D accuracy (d/acc*), the JSD estimate and gradient norms (grad_norm/*)")
    shadow_every_n_steps: int = _f(50, "every N batches, log G's gradient norm under both costs (0: off)")
    grad_norm_per_layer: bool = _f(False, "also log the gradient norm of every parameter tensor")
    probe_every_n_epochs: int = _f(0, "every N epochs train a fresh D on a frozen copy of G and log probe/* (0: off)")
    probe_d_iters: int = _f(100, "D iterations of each in-training probe")
    # metrics of G's samples (gan_lightning/metrics.py, callbacks/metrics.py)
    metric_every_n_epochs: int = _f(5, "FID/KID/IS/PR (images) or mode coverage (ring, grid) every N epochs and "
                                    "after the last one (0: off)")
    metric_num_samples: int = _f(0, "generated samples per evaluation (0: 5000 for images, 2500 for 2-D points)")
    metric_extractor: str = _f("auto", "feature extractor: auto (lenet-mnist for digits, inception otherwise), "
                               "inception, lenet-mnist")
    metric_weights: str = _f("", "local weights file of --metric_extractor (offline Inception: torch-fidelity's "
                             "weights-inception-2015-12-05-6726825d.pth); metric names then carry the file's "
                             "hash unless it is the extractor's reference weights")
    metric_download: bool = _f(False, "download the Inception weights if they are not in the torch hub cache")
    metrics: str = _f("fid,kid,is,pr", "image metrics: any of fid, kid, is, pr, or none")
    metric_split: str = _f("", "reference split: train or test (default: test; folder: train)")
    metric_kid_subset_size: int = _f(1000, "samples per KID subset; KID is skipped when there are fewer samples")
    metric_cache_dir: str = _f("", "cache of real features (default: $GAN_LIGHTNING_CACHE or ~/.cache/gan_lightning)")
    sample_every_n_epochs: int = _f(1, "write a sample grid every N epochs (0: only at the end)")
    resume: str = _f("", "checkpoint to resume from: a path, or 'last' (last.ckpt of --run_name, else the newest run)")
    config: str = _f("", "YAML file of these same keys; flags given on the command line override it")
    dry_run: bool = _f(False, "print the resolved config as YAML and exit")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_TYPES: dict[str, type] = {k: v for k, v in get_type_hints(TrainConfig).items()}


# -- parsing ----------------------------------------------------------------------------------
def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"invalid bool value: {value!r} (use true or false)")


def _convert(key: str, value: Any) -> Any:
    """Check and convert one value to the field's type; raise UsageError naming the key.

    Values come from the command line (strings) or a YAML file (any YAML type): lists, mappings,
    dates and the like are refused with the type YAML read, floats must be finite.
    """
    kind = FIELD_TYPES[key]
    if value is not None and not isinstance(value, (str, int, float)):
        what = type(value).__name__
        hint = " (YAML reads an unquoted date as a date: quote it)" if what in ("date", "datetime") else ""
        raise UsageError(f"--{key}: expected {kind.__name__}, got a {what} {value!r}{hint}")
    try:
        if kind is bool:
            return _to_bool(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise UsageError(f"--{key}: must be a finite number, got {value!r}")
            return number
        return "" if value is None else str(value)
    except (ValueError, TypeError, OverflowError):
        raise UsageError(f"--{key}: expected {kind.__name__}, got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        if message.startswith("unrecognized arguments"):
            words = message.split(":", 1)[1].split()
            if not words or not words[0].startswith("-"):  # a stray value, e.g. after a flag that takes none
                raise UsageError(f"unexpected argument {words[0] if words else ''!r}: a value without a flag "
                                 f"(booleans take --flag=true)")
            flag = words[0].split("=")[0].lstrip("-")
            close = difflib.get_close_matches(flag, FIELD_TYPES, n=1)
            hint = f"; did you mean --{close[0]}?" if close else "; see --help for the flags"
            raise UsageError(f"unknown flag --{flag}{hint}")
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train.py",
        description="Train a GAN. Flags are the fields of gan_lightning.config.TrainConfig.",
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,  # only flags actually given end up in the namespace
    )
    # Accept "--lr_g -1e-4": argparse only knows plain negative numbers like -1 or -0.5.
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
    for f in fields(TrainConfig):
        kind = FIELD_TYPES[f.name]
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        if kind is bool:
            p.add_argument(f"--{f.name}", nargs="?", const="true", metavar="BOOL", help=help_text)
        else:
            p.add_argument(f"--{f.name}", metavar=kind.__name__.upper(), help=help_text)
    return p


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config: no such file {path}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"--config: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config: cannot read {path} as text ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path} must hold a mapping of flag names to values")
    unknown = sorted((k for k in data if k not in FIELD_TYPES), key=str)
    if unknown:
        raise UsageError(f"--config: unknown key {unknown[0]!r} in {path}; valid keys are the flags of --help")
    return data


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, set[str]]:
    """Parse flags (and a --config YAML) into a validated TrainConfig.

    Precedence: defaults < YAML file < command line.

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The config and the set of keys the user gave explicitly (YAML or command line).

    Raises:
        UsageError: unknown flag or key, wrong type or invalid value.
    """
    cli = vars(_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))
    given = dict(_load_yaml(cli["config"])) if cli.get("config") else {}
    given.update(cli)
    if given.get("loss") in LOSS_ALIASES:
        base, implied = LOSS_ALIASES[given["loss"]]
        given = {**implied, **given, "loss": base}
    values = {k: _convert(k, v) for k, v in given.items()}
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg, set(values)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from a stored dict (a checkpoint's), ignoring keys this version lacks."""
    known = {k: _convert(k, v) for k, v in values.items() if k in FIELD_TYPES}
    return TrainConfig(**known)


# -- validation -------------------------------------------------------------------------------
# Sizes above these are typing mistakes that would exhaust memory or processes before any message.
SIZE_LIMITS: dict[str, int] = {"n_critic": 1000, "probe_d_iters": 10_000_000, "batch_size": 1 << 16, "image_size": 1024, "z_dim": 1 << 16, "g_width": 1 << 14,
                               "d_width": 1 << 14, "mbd_kernels": 4096, "mbd_dim": 1024, "vbn_ref_size": 1 << 16,
                               "num_workers": 256, "num_nodes": 1 << 14, "metric_num_samples": 1_000_000,
                               "metric_kid_subset_size": 1_000_000}
SEED_MAX = 2**32 - 1  # numpy's seed range; Lightning replaces a seed outside it by 0 with only a warning


def _check_name(flag: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise UsageError(f"--{flag}: unknown value {value!r}; valid values are: {', '.join(valid)}")


def resolve_arch(cfg: TrainConfig) -> str:
    """The network family actually used: ``auto`` follows the kind of data."""
    if cfg.arch != "auto":
        return cfg.arch
    from gan_lightning.data import DATASETS

    return "mlp" if DATASETS[cfg.dataset].kind == "points" else "dcgan"


def noise_enabled(cfg: TrainConfig) -> bool:
    """Whether D's inputs get instance noise: a schedule other than none, and a sigma or the adaptive one."""
    return cfg.noise_schedule != "none" and (cfg.noise_std > 0 or cfg.noise_schedule == "adaptive")


def resolve_g_objective(cfg: TrainConfig) -> str:
    """What G minimizes: ``auto`` is feature matching for the semi-supervised task, else adversarial."""
    if cfg.g_objective != "auto":
        return cfg.g_objective
    return "feature_matching" if cfg.task == "semi_supervised" else "adversarial"


def resolve_d_norm(cfg: TrainConfig) -> str:
    if cfg.d_norm != "auto":
        return cfg.d_norm
    return "batch" if resolve_arch(cfg) == "dcgan" else "none"


def validate(cfg: TrainConfig) -> None:
    """Check every value a user can get wrong; raise UsageError with one line saying what is right."""
    from gan_lightning.data import DATASETS
    from gan_lightning.losses import LOSSES
    from gan_lightning.networks import NETWORKS

    _check_name("dataset", cfg.dataset, list(DATASETS))
    _check_name("arch", cfg.arch, ["auto", *NETWORKS])
    _check_name("loss", cfg.loss, [*LOSSES, *LOSS_ALIASES])
    _check_name("logger", cfg.logger, LOGGERS)
    _check_name("precision", cfg.precision, PRECISIONS)
    _check_name("accelerator", cfg.accelerator, ACCELERATORS)
    for key in ("batch_size", "image_size", "z_dim", "g_width", "d_width", "n_critic", "num_nodes", "labels_per_class",
                "log_every_n_steps", "mbd_kernels", "mbd_dim", "vbn_ref_size", "probe_d_iters",
                "metric_kid_subset_size"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"--{key}: must be >= 1, got {getattr(cfg, key)}")
    for key, most in SIZE_LIMITS.items():
        if getattr(cfg, key) > most:
            raise UsageError(f"--{key}: must be <= {most:,}, got {getattr(cfg, key):,}")
    if not 0 <= cfg.seed <= SEED_MAX or not -1 <= cfg.label_seed <= SEED_MAX:
        raise UsageError(f"--seed and --label_seed: must be in [0, {SEED_MAX}] (--label_seed also -1), "
                         f"got {cfg.seed} and {cfg.label_seed}")
    for key in ("lr_g", "lr_d"):
        if not getattr(cfg, key) > 0:
            raise UsageError(f"--{key}: must be > 0, got {getattr(cfg, key)}")
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, key) < 1:
            raise UsageError(f"--{key}: must be in [0, 1), got {getattr(cfg, key)}")
    if not 0 < cfg.adam_eps <= 1:
        raise UsageError(f"--adam_eps: must be in (0, 1], got {cfg.adam_eps}")
    for key in ("gp_weight", "weight_clip", "num_workers", "sample_every_n_epochs", "noise_std", "noise_final_std",
                "shadow_every_n_steps", "historical_averaging", "probe_every_n_epochs",
                "metric_every_n_epochs", "metric_num_samples", "unsup_weight", "lr_decay_steps"):
        if getattr(cfg, key) < 0:
            raise UsageError(f"--{key}: must be >= 0, got {getattr(cfg, key)}")
    if cfg.max_epochs == 0 or cfg.max_epochs < -1 or cfg.max_steps == 0 or cfg.max_steps < -1:
        raise UsageError("--max_epochs and --max_steps must be >= 1, or -1 for no limit")
    if cfg.max_epochs == -1 and cfg.max_steps == -1:
        raise UsageError("--max_epochs=-1 needs a --max_steps limit")
    device_ids = [p.strip() for p in cfg.devices.split(",") if p.strip()]
    if cfg.devices != "auto" and not (device_ids and all(p.isdigit() and int(p) < 1 << 16 for p in device_ids)):
        raise UsageError(f"--devices: expected a number, a list like 0,1 or auto, got {cfg.devices!r}")
    if cfg.run_name and (Path(cfg.run_name).name != cfg.run_name or cfg.run_name in (".", "..")):
        raise UsageError(f"--run_name: must be a plain folder name, got {cfg.run_name!r}")

    from gan_lightning.losses import d_bce_loss
    from gan_lightning.noise import SCHEDULES
    from gan_lightning.objectives import FM_DISTANCES

    _check_name("g_objective", cfg.g_objective, ["auto", "adversarial", "feature_matching"])
    _check_name("on_nonfinite", cfg.on_nonfinite, ["stop", "skip"])
    from gan_lightning.extractors import EXTRACTORS
    from gan_lightning.metrics import parse_metrics

    _check_name("metric_extractor", cfg.metric_extractor, ["auto", *EXTRACTORS])
    if cfg.metric_split:
        _check_name("metric_split", cfg.metric_split, ["train", "test"])
    try:
        parse_metrics(cfg.metrics)
    except UsageError as e:
        raise UsageError(f"--metrics: {e}") from None
    _check_name("fm_distance", cfg.fm_distance, list(FM_DISTANCES))
    if not 0 < cfg.label_smoothing <= 1:
        raise UsageError(f"--label_smoothing: must be in (0, 1] (1.0: off), got {cfg.label_smoothing}")
    if cfg.label_smoothing != 1.0 and LOSSES[cfg.loss].d is not d_bce_loss:
        raise UsageError(f"--label_smoothing needs a BCE loss (minimax or nonsaturating), not --loss {cfg.loss}")
    if cfg.fm_layer and resolve_g_objective(cfg) != "feature_matching":
        raise UsageError("--fm_layer only applies with --g_objective feature_matching")

    _check_name("noise_schedule", cfg.noise_schedule, ["none", *SCHEDULES])
    from gan_lightning.build import build_noise

    try:
        build_noise(cfg)
    except ValueError as e:
        raise UsageError(f"instance noise: {e}") from None

    spec = DATASETS[cfg.dataset]
    arch_name = resolve_arch(cfg)
    arch = NETWORKS[arch_name]
    if spec.kind == "points" and arch.image_sizes is not None:
        raise UsageError(f"--arch {arch_name} needs image data; dataset {cfg.dataset!r} is 2-D points: use --arch mlp")
    if spec.kind == "images" and arch.image_sizes is not None and cfg.image_size not in arch.image_sizes:
        sizes = ", ".join(map(str, arch.image_sizes))
        raise UsageError(f"--image_size {cfg.image_size} is not supported by --arch {arch_name}; use one of {sizes}")
    _check_name("g_norm", cfg.g_norm, arch.g_norms)
    _check_name("d_norm", resolve_d_norm(cfg), ["auto", *arch.d_norms])
    _validate_task(cfg)
    if cfg.logger == "tensorboard":
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
            raise UsageError("--logger tensorboard needs the tensorboard package: pip install tensorboard")
    if cfg.resume and cfg.resume != "last" and not Path(cfg.resume).is_file():
        raise UsageError(f"--resume: no checkpoint file at {cfg.resume} (give a .ckpt path or 'last')")
    if cfg.config and not Path(cfg.config).is_file():
        raise UsageError(f"--config: no such file {cfg.config}")


# Options of the GAN loop that the semi-supervised loop does not have: their "off" values.
SSL_UNUSED: dict[str, Any] = {"n_critic": 1, "gp_weight": 0.0, "weight_clip": 0.0, "label_smoothing": 1.0,
                              "historical_averaging": 0.0, "probe_every_n_epochs": 0}


def _validate_task(cfg: TrainConfig) -> None:
    from gan_lightning.build import TASKS
    from gan_lightning.data import DATASETS
    from gan_lightning.ssl_data import UNLABELED_CHOICES

    _check_name("task", cfg.task, list(TASKS))
    _check_name("unlabeled", cfg.unlabeled, UNLABELED_CHOICES)
    if not 0 <= cfg.ema_decay < 1:
        raise UsageError(f"--ema_decay: must be in [0, 1) (0: off), got {cfg.ema_decay}")
    if cfg.task != "semi_supervised":
        return
    if DATASETS[cfg.dataset].num_classes < 2:
        labeled = ", ".join(k for k, v in DATASETS.items() if v.num_classes >= 2)
        raise UsageError(f"--task semi_supervised needs a data set with class labels ({labeled}), "
                         f"not --dataset {cfg.dataset}")
    for key, off in SSL_UNUSED.items():
        if getattr(cfg, key) != off:
            raise UsageError(f"--{key} is not part of --task semi_supervised (its D loss is the K+1 loss); "
                             f"leave it at {off}")
    if noise_enabled(cfg):
        raise UsageError("instance noise (--noise_std) is not part of --task semi_supervised; leave --noise_std at 0")


def flags_markdown() -> str:
    """The README's table of flags, made from TrainConfig (a test keeps the README in step)."""
    rows = ["| flag | type | default | meaning |", "|---|---|---|---|"]
    for f in fields(TrainConfig):
        default = "" if f.default == "" else f"`{f.default}`"
        rows.append(f"| `--{f.name}` | {FIELD_TYPES[f.name].__name__} | {default} | {f.metadata['help']} |")
    return "\n".join(rows)
