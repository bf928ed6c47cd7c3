"""The one flat, typed training config: its fields are the CLI flags and the W&B config keys."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence, get_type_hints

from gan_lightning.errors import UsageError

# Loss names that stand for a loss and the settings it is used with, so that one value of a W&B
# grid selects them all; flags given as well win over the alias's settings.
LOSS_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "wasserstein_gp": ("wasserstein", {"gp_weight": 10.0, "n_critic": 5}),  # WGAN-GP (Gulrajani et al. 2017)
}
# The stability remedies as one grid value each (--remedy), so a W&B grid can cross them with --loss;
# flags given as well win over the preset's settings. The settings are the papers' own:
REMEDIES: dict[str, dict[str, Any]] = {
    "none": {},
    # Sonderby et al. 2016: Gaussian noise on D's real and generated inputs, std 0.1 on [0, 1] data
    # (0.2 on the [-1, 1] images here), annealed linearly to 0 (over --noise_anneal_steps)
    "noise": {"noise_std": 0.2, "noise_schedule": "linear", "noise_final_std": 0.0},
    "r1": {"r1_weight": 10.0},  # Mescheder et al. 2018: gamma = 10 on their image data sets
    "roth": {"roth_gamma": 2.0, "roth_schedule": "exponential"},  # Roth et al. 2017: gamma_0 * 0.01^(t/T)
    "sn": {"d_spectral_norm": True},  # Miyato et al. 2018
    "wgan_gp": {"gp_weight": 10.0},  # Gulrajani et al. 2017's penalty, on the loss of --loss (Fedus et al. 2018)
}
# The flags that fix the networks' shapes (what a checkpoint's weights must fit), G's and D's: a resumed
# run keeps them, and a probe of a checkpoint's G takes them from it. The data set and image size fix both.
DATA_SHAPE_KEYS = ("dataset", "image_size")
G_SHAPE_KEYS = (*DATA_SHAPE_KEYS, "arch", "z_dim", "g_width", "g_norm", "vbn_ref_size")
D_SHAPE_KEYS = (*DATA_SHAPE_KEYS, "task", "arch", "d_width", "d_norm", "d_spectral_norm", "minibatch_discrimination",
                "mbd_kernels", "mbd_dim")
SHAPE_KEYS = tuple(dict.fromkeys((*G_SHAPE_KEYS, *D_SHAPE_KEYS)))  # both, each once
# Shape keys that only count when another flag turns their layer on: (that flag, its "on" value).
SHAPE_KEYS_USED_WITH: dict[str, tuple[str, Any]] = {"vbn_ref_size": ("g_norm", "vbn"),
                                                    "mbd_kernels": ("minibatch_discrimination", True),
                                                    "mbd_dim": ("minibatch_discrimination", True)}


def shape_keys(cfg: "TrainConfig", keys: Sequence[str] = SHAPE_KEYS) -> tuple[str, ...]:
    """The ``keys`` (default: all of SHAPE_KEYS) that fix a network of ``cfg`` (a resolved config): a
    layer's size only where its layer is on."""
    used = {k: getattr(cfg, flag) == on for k, (flag, on) in SHAPE_KEYS_USED_WITH.items()}
    return tuple(k for k in keys if used.get(k, True))
TASKS = ("gan", "semi_supervised")  # what --task names; gan_lightning.build.TASKS builds each
LOGGERS = ("csv", "wandb", "tensorboard", "none")
X_AXES = ("g_steps", "images_seen")  # the step axis of W&B charts: progress/<x_axis>
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Every training option. Field name = CLI flag (``--name=value``) = W&B config key.

    Frozen, so that :class:`~gan_lightning.config.resolve.ResolvedConfig` can extend it frozen;
    ``dataclasses.replace`` makes a changed copy.
    """

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
    d_norm: str = _f("auto", "normalization in D: auto (batch for dcgan, none for mlp and with --d_spectral_norm), "
                     "batch, layer, none")
    d_spectral_norm: bool = _f(False, "spectral normalization of D's Linear and conv weights, the head included "
                               "(Miyato et al. 2018; one power iteration per forward; needs --d_norm none; logs "
                               "sn/<layer>)")
    # objective
    loss: str = _f("nonsaturating", "GAN objective: minimax, nonsaturating, wasserstein, hinge, least_squares, "
                   "or wasserstein_gp (= wasserstein --gp_weight 10 --n_critic 5)")
    remedy: str = _f("none", "a stability remedy with the papers' settings, for sweeps: none, noise (= --noise_std "
                      "0.2 --noise_schedule linear), r1 (= --r1_weight 10), roth (= --roth_gamma 2, exponential; BCE "
                      "losses), sn (= --d_spectral_norm), wgan_gp (= --gp_weight 10 on --loss); flags given win")
    n_critic: int = _f(1, "D updates per G update (5 is usual for wasserstein)")
    gp_weight: float = _f(0.0, "weight of the WGAN-GP gradient penalty on D (0: off; 10 is usual)")
    weight_clip: float = _f(0.0, "clip D's weights to [-c, c] after each step (0: off; WGAN uses 0.01)")
    # D's gradient regularizers that followed Arjovsky & Bottou 2017 (core/penalties.py)
    r1_weight: float = _f(0.0, "gamma of R1 = gamma/2 E_real[squared norm of grad_x D's logit] (Mescheder et al. "
                          "2018; 0: off; 10 is usual)")
    r2_weight: float = _f(0.0, "gamma of R2, the same penalty on generated samples (Mescheder et al. 2018; 0: off)")
    reg_every: int = _f(1, "lazy R1/R2: add them every N-th D step with their weight times N (StyleGAN2: 16)")
    roth_gamma: float = _f(0.0, "gamma_0 of Roth et al. 2017's regularizer, (gamma/2) Omega on D's loss; BCE losses "
                           "only (0: off; the paper: 2.0)")
    roth_schedule: str = _f("exponential", "how Roth's gamma is annealed over G steps: constant, linear, exponential "
                            "(the paper's gamma_0 * 0.01^(t/T)), cosine, step")
    roth_final_gamma: float = _f(-1.0, "Roth's gamma from --roth_anneal_steps on (-1: 0.01 * --roth_gamma, as "
                                 "the paper)")
    roth_anneal_steps: int = _f(-1, "G steps over which Roth's gamma is annealed (-1: the whole run, as the paper: "
                                "--max_steps, or --max_epochs x batches per epoch)")
    # instance noise on D's inputs (Arjovsky & Bottou 2017, sec. 3)
    noise_std: float = _f(0.0, "std of Gaussian noise added to every D input, real and fake (0: off)")
    noise_schedule: str = _f("constant", "how sigma moves: none (no noise), constant, linear, exponential, cosine, "
                             "step, adaptive")
    noise_final_std: float = _f(0.0, "sigma reached after --noise_anneal_steps (annealed schedules)")
    noise_anneal_steps: int = _f(-1, "generator steps over which sigma is annealed (-1: the whole run, "
                                 "--max_steps or --max_epochs x batches per epoch)")
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
    g_ema: float = _f(0.0, "decay of an exponential moving average of G's weights, updated after each G step "
                      "(0: off; 0.999 is usual); sample grids and metrics then use it, under keys ending in _ema")
    # hardware
    accelerator: str = _f("auto", "cpu, gpu, auto, ...")
    devices: str = _f("auto", "devices per node: a number, a list like 0,1, or auto")
    num_nodes: int = _f(1, "number of nodes")
    strategy: str = _f("auto", "Lightning strategy, or ddp_gan (each optimizer's gradients averaged over the "
                       "processes at its step); auto: ddp_gan for several devices, else one process")
    precision: str = _f("32-true", "32-true, 16-mixed, bf16-mixed, ...")
    compile: bool = _f(False, "torch.compile the networks (each network's submodules, compiled in place: "
                       "checkpoints are unchanged; the first steps wait for the compiler; not with the penalties that "
                       "need a double backward: --gp_weight, --r1_weight, --r2_weight, --roth_gamma)")
    channels_last: bool = _f(False, "image batches and convolution weights in channels-last memory format "
                             "(faster convolutions on GPUs with tensor cores; images only)")
    # logging and outputs
    logger: str = _f("csv", "csv (metrics.csv only), wandb or tensorboard (each also writes metrics.csv), none")
    project: str = _f("gan_lightning", "W&B project")
    x_axis: str = _f("g_steps", "x-axis of every W&B chart, sample grids included: g_steps or images_seen (both "
                     "are logged with every row as progress/g_steps and progress/images_seen)")
    run_name: str = _f("", "run folder name under --out_dir (default: <dataset>-<arch>-<loss>-<time>)")
    out_dir: str = _f("runs", "folder holding one sub-folder per run")
    log_every_n_steps: int = _f(10, "log metrics every N training batches")
    diagnostics: bool = _f(True, "log D accuracy (d/acc*), the JSD estimate and gradient norms (grad_norm/*)")
    shadow_every_n_steps: int = _f(50, "every N batches, log G's gradient norm under both costs (0: off)")
    grad_norm_per_layer: bool = _f(False, "also log the gradient norm of every parameter tensor")
    probe_every_n_epochs: int = _f(0, "every N epochs train a fresh D on a frozen copy of G and log probe/* (0: off)")
    probe_d_iters: int = _f(100, "D iterations of each in-training probe")
    # metrics of G's samples (gan_lightning/metrics/fidelity.py, callbacks/metrics.py)
    metric_every_n_epochs: int = _f(5, "FID/KID/IS/PR (images) or mode coverage (ring, grid) every N epochs and "
                                    "after the last one (0: off)")
    metric_num_samples: int = _f(0, "generated samples per evaluation (0: 5000 for images, 2500 for 2-D points)")
    metric_extractor: str = _f("auto", "feature extractor: auto (lenet-mnist for digits, inception for other images, "
                               "none for 2-D points), inception, lenet-mnist")
    metric_weights: str = _f("", "local weights file of --metric_extractor (offline Inception: torch-fidelity's "
                             "weights-inception-2015-12-05-6726825d.pth); metric names then carry the file's "
                             "hash unless it is the extractor's reference weights")
    metric_download: bool = _f(False, "download the Inception weights if they are not in the torch hub cache")
    metrics: str = _f("fid,kid,is,pr,dc", "image metrics: any of fid, kid, is, pr (precision, recall), dc (density, "
                      "coverage), or none")
    metric_split: str = _f("", "reference split: train or test (default: test; folder: train)")
    metric_kid_subset_size: int = _f(1000, "samples per KID subset; KID is skipped when there are fewer samples")
    metric_cache_dir: str = _f("", "cache of real features (default: $GAN_LIGHTNING_CACHE or ~/.cache/gan_lightning)")
    metric_live_g: bool = _f(False, "with --g_ema, also score the live G under the plain metric keys (no effect "
                             "without --g_ema)")
    sample_every_n_epochs: int = _f(1, "write a sample grid every N epochs (0: only at the end)")
    resume: str = _f("", "checkpoint to resume from: a path, or 'last' (last.ckpt of --run_name, else the newest run)")
    config: str = _f("", "YAML file of these same keys; flags given on the command line override it")
    dry_run: bool = _f(False, "print the resolved config as YAML and exit")

    def to_dict(self) -> dict[str, Any]:
        """The flags and their values (a subclass's own fields left out)."""
        return {f.name: getattr(self, f.name) for f in fields(TrainConfig)}


FIELD_TYPES: dict[str, type] = {k: v for k, v in get_type_hints(TrainConfig).items()}


def check_name(flag: str, value: str, valid: Sequence[str]) -> None:
    """Raise a UsageError listing ``valid`` when ``value`` is not one of them."""
    if value not in valid:
        raise UsageError(f"--{flag}: unknown value {value!r}; valid values are: {', '.join(valid)}")


def flags_markdown() -> str:
    """The README's table of flags, made from TrainConfig (a test keeps the README in step)."""
    rows = ["| flag | type | default | meaning |", "|---|---|---|---|"]
    for f in fields(TrainConfig):
        default = "" if f.default == "" else f"`{f.default}`"
        rows.append(f"| `--{f.name}` | {FIELD_TYPES[f.name].__name__} | {default} | {f.metadata['help']} |")
    return "\n".join(rows)


def flag_text(key: str, value: Any, implied: Mapping[str, str]) -> str:
    """``--<key>``, or ``<the flag that set it> (--<key> <value>)`` for a key in ``implied``; a bool
    that is on shows no value (``--remedy sn (--d_spectral_norm)``)."""
    if key not in implied:
        return f"--{key}"
    shown = "" if value is True or value is None else f" {value:g}" if isinstance(value, float) else f" {value}"
    return f"{implied[key]} (--{key}{shown})"
