"""Feature extractors for FID/KID/IS/precision-recall, chosen by name and run through torch-fidelity.

Two extractors, in the ``EXTRACTORS`` table at the end:

- ``inception``: torch-fidelity's ``inception-v3-compat``, the port of the TF Inception 2015-12-05
  graph that FID and KID papers use (2048-d pool3 features, 1008 logits). Its weights are a 95 MB
  file. They are looked for, in this order: the path the user gives (``--metric_weights``), then the
  torch hub cache (``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``,
  where torch-fidelity itself keeps them). Nothing is downloaded unless the user opts in
  (``--metric_download``), and then only after a 3-second reachability check, so an offline machine
  gets one line saying what to do instead of a hang.
- ``lenet-mnist``: a small digit classifier shipped with the package
  (``gan_lightning/weights/lenet_mnist.pt``, trained by ``scripts/train_feature_extractor.py`` on
  the ``mnist5k`` train split). Its 128-d penultimate layer feeds FID/KID/precision-recall and
  its 10 logits the Inception score, so digit metrics work offline and fast on a CPU. Numbers
  are only comparable with other ``lenet`` numbers, never with Inception ones.

Each extractor has reference weights (``ExtractorSpec.sha256``): the shipped LeNet file and
torch-fidelity's official Inception file. Metric keys use the plain name (``fid/lenet_5k``) only
for those; any other weights file is marked with its hash (``fid/lenet-1a2b3c4d_5k``, see
:func:`gan_lightning.metrics.keys.metric_key`), so numbers that look comparable are.

Both take what torch-fidelity feeds: uint8 images (B, C, H, W). Grey images are repeated to three
channels for Inception; LeNet turns RGB into grey and resizes any size to 32x32 itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from gan_lightning.errors import UsageError
from gan_lightning.metrics.lenet import LENET_FILE, WEIGHTS_DIR, LeNetFeatureExtractor, LeNetMNIST

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
# sha256 of weights/lenet_mnist.pt; tests check the shipped file against it (retrained: update it and the README).
LENET_MNIST_SHA256 = "e60a6f2378c13b1969b40630cce7196b042591521602764643736d9f32adb358"
# sha256 of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (95,628,359 bytes); torch hub checks
# its first 8 hex digits, the ones in the file name, when it downloads the file.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
DIGIT_DATASETS = ("digits", "mnist5k", "mnist")  # data that gets lenet-mnist by default
LENET_VALIDATED = ("mnist5k", "mnist")  # MNIST digits: 98.5% on the mnist5k test split (sklearn digits: 34%)


# -- the table, weights and loading ------------------------------------------------------------
@dataclass(frozen=True)
class ExtractorSpec:
    """One extractor: its torch-fidelity name, layers, input channels and where its weights come from.

    Args:
        fidelity_name: the name in torch-fidelity's registry.
        short: how metric keys name it: ``fid/<short>_5k`` (``fid/<short>-<hash>_5k`` with other weights).
        feature_layer: layer for FID, KID and precision/recall.
        logits_layer: layer for the Inception score.
        channels: 3 when grey images must be repeated to RGB; 0 when it takes 1 or 3 channels.
        shipped: file name under ``gan_lightning/weights/`` ("" if not shipped).
        url: where the weights can be downloaded from ("" if nowhere).
        description: one line for --help and the README.
        sha256: sha256 of the reference weights file, the only one whose metrics carry the plain name.
        weights_source: what a weights file of this extractor is, for error messages.
    """

    fidelity_name: str
    short: str
    feature_layer: str
    logits_layer: str
    channels: int
    shipped: str = ""
    url: str = ""
    description: str = ""
    sha256: str = ""
    weights_source: str = ""


def register_with_fidelity() -> None:
    """Register ``lenet-mnist`` with torch-fidelity (once; later calls do nothing)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if "lenet-mnist" not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor("lenet-mnist", LeNetFeatureExtractor)


def check_name(name: str) -> ExtractorSpec:
    """The spec of ``name``. Raises UsageError listing the valid names when it is unknown."""
    if name not in EXTRACTORS:
        raise UsageError(f"unknown feature extractor {name!r}; valid extractors are: {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]


def default_extractor(dataset: str, kind: str = "images") -> str | None:
    """``lenet-mnist`` for digit data, ``inception`` for other images, None for 2-D points.

    FashionMNIST is grey but not digits: it gets Inception (LeNet's features of clothes would be
    features of a digit classifier; allowed with a warning, see :func:`data_warning`). sklearn's
    8x8 ``digits`` get lenet-mnist too, with a warning: Inception is no better on 8x8 images.
    """
    if kind == "points":
        return None
    return "lenet-mnist" if dataset in DIGIT_DATASETS else "inception"


def data_warning(name: str, dataset: str) -> str | None:
    """A one-line caveat when ``name`` is used on data it was not validated on, else None.

    lenet-mnist classifies 98.5% of the mnist5k test digits right but only 34% of sklearn's
    8x8 ``digits`` (blurry when upsampled): on ``digits`` it is the only fast choice, and a rough one.
    """
    if name == "lenet-mnist" and dataset not in LENET_VALIDATED:
        other = "" if dataset in DIGIT_DATASETS else "; use --metric_extractor inception to compare with papers"
        return (f"lenet-mnist was trained on MNIST digits; its features of {dataset!r} are not validated, "
                f"compare such numbers only with each other{other}")
    return None


def hub_path(url: str) -> Path:
    """Where torch hub (and torch-fidelity) keep the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_weights(name: str, weights_path: str | os.PathLike = "", download: bool = False) -> Path:
    """The weights file of extractor ``name``: the given path, the shipped file or the hub cache.

    Only with ``download`` and a host that answers within 3 s is anything fetched (into the hub
    cache, where torch-fidelity would put it, checked against the hash in its name).

    Raises:
        UsageError: unknown name, missing file, or Inception weights neither local nor allowed
            to be downloaded; one line that says what to pass instead.
    """
    spec = check_name(name)
    if weights_path:
        path = Path(weights_path).expanduser()
        if path.is_dir():
            raise UsageError(f"--metric_weights: {path} is a folder; give the {name} weights file "
                             f"({spec.weights_source})")
        if not path.is_file():
            raise UsageError(f"--metric_weights: no file at {path}; give the path of the {name} weights file")
        return path
    if spec.shipped:
        path = WEIGHTS_DIR / spec.shipped
        if not path.is_file():
            raise UsageError(f"the shipped {name} weights are missing at {path}; reinstall gan_lightning "
                             f"or pass --metric_weights PATH")
        return path
    cached = hub_path(spec.url)
    if cached.is_file():
        return cached
    if not download:
        raise UsageError(
            f"no {name} weights: {cached} does not exist; pass --metric_weights PATH (torch-fidelity's "
            f"{cached.name}) or --metric_download to fetch it (needs internet)"
        )
    if not _reachable(spec.url):
        raise UsageError(f"--metric_download: cannot reach {urlparse(spec.url).hostname} within 3 s; copy "
                         f"{cached.name} to this machine and pass --metric_weights PATH")
    cached.parent.mkdir(parents=True, exist_ok=True)
    prefix = torch.hub.HASH_REGEX.search(cached.name)
    torch.hub.download_url_to_file(spec.url, str(cached), hash_prefix=prefix.group(1) if prefix else None)
    return cached


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, hashed once per (path, size, modification time) in this process."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def _unloaded_inception() -> nn.Module:
    """torch-fidelity's Inception module, randomly initialised: no weights read, the network never touched."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    class _Unloaded(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the constructor's load: keep the random init
            return None

    original = tfi.load_state_dict_from_url
    tfi.load_state_dict_from_url = lambda *a, **k: {}  # never touch the network
    try:
        return _Unloaded("inception-v3-compat", ["2048"])
    finally:
        tfi.load_state_dict_from_url = original


@functools.lru_cache(maxsize=None)
def expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Entry name -> shape of the state dict extractor ``name`` loads (built on the meta device: no memory)."""
    with torch.device("meta"):
        module = LeNetMNIST() if name == "lenet-mnist" else _unloaded_inception()
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def state_dict_problem(name: str, path: Path) -> str | None:
    """What makes ``path`` unusable as the weights of extractor ``name``, in words; None if it fits.

    The file is read with ``weights_only=True`` (torch-fidelity itself does not use it), then its
    entries are compared with the ones the extractor has: names, then shapes.
    """
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        return f"cannot be read ({e.strerror or type(e).__name__})"
    except Exception as e:  # noqa: BLE001 - torch.load raises many types on foreign files
        if "Unsupported global" in str(e):  # a torch file, but of objects weights_only refuses to build
            return ("holds pickled Python objects (a whole model or a checkpoint of another program?), "
                    "not a state_dict of tensors; such files are not loaded, since unpickling runs code")
        return "is not a torch file, or a truncated one (torch.load cannot read it)"
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a state_dict (a dict of entry name -> tensor)"
    if "state_dict" in state:
        return "is a training checkpoint (it has a 'state_dict' entry), not a bare state_dict"
    other = next((k for k, v in state.items() if not isinstance(v, Tensor)), None)
    if other is not None:
        return f"is not a state_dict: entry {other!r} is of type {type(state[other]).__name__}, not a tensor"
    expected = expected_shapes(name)
    # BatchNorm fills in a missing num_batches_tracked (older files lack it); every other entry must be there.
    needed = [k for k in expected if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing == needed:
            parts.append(f"has none of the {len(needed)} entries {name} needs (e.g. {missing[0]!r})")
        elif missing:
            parts.append(f"lacks {len(missing)} of the {len(needed)} entries {name} needs, e.g. {missing[0]!r}")
        if extra:
            parts.append(f"has {len(extra)} {'entry' if len(extra) == 1 else 'entries'} {name} does not, "
                         f"e.g. {extra[0]!r}")
        return f"is a state_dict of another network: it {' and '.join(parts)}"
    bad = next((k for k in state if tuple(state[k].shape) != expected[k]), None)
    if bad is not None:
        return (f"is a state_dict of another shape: entry {bad!r} is {_shape(tuple(state[bad].shape))}, "
                f"{name} has {_shape(expected[bad])}")
    return None


def _check_state_dict(name: str, path: Path) -> None:
    """Refuse anything but a state dict of ``name`` before torch-fidelity loads it (it does not use weights_only)."""
    problem = state_dict_problem(name, path)
    if problem:
        raise UsageError(f"{path} {problem}; expected {EXTRACTORS[name].weights_source}")


@dataclass
class Extractor:
    """A loaded extractor: call it on uint8 images to get ``{layer: (B, D)}`` float32 features.

    Attributes:
        name: our name (``inception``, ``lenet-mnist``).
        spec: its table entry.
        module: the torch-fidelity FeatureExtractorBase, in eval mode, gradients off.
        weights: the weights file used.
        sha256: sha256 of that file; part of every cache key of real statistics, and of metric
            names when it is not the extractor's reference file (:func:`gan_lightning.metrics.keys.metric_key`).
    """

    name: str
    spec: ExtractorSpec
    module: FeatureExtractorBase
    weights: Path
    sha256: str

    @property
    def layers(self) -> tuple[str, str]:
        return self.spec.feature_layer, self.spec.logits_layer

    def to(self, device: torch.device | str) -> Extractor:
        self.module.to(device)
        return self

    @torch.no_grad()
    def __call__(self, pixels: Tensor) -> dict[str, Tensor]:
        """Features of uint8 images (B, C, H, W) on the extractor's device; returns float32 (B, D) per layer."""
        if self.spec.channels == 3 and pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)  # grey -> RGB
        out = self.module(pixels)
        return {k: v.float() for k, v in self.module.convert_features_tuple_to_dict(out).items()}


def load_extractor(name: str, weights_path: str | os.PathLike = "", download: bool = False,
                   device: torch.device | str = "cpu") -> Extractor:
    """Resolve the weights of ``name``, check them and build the torch-fidelity extractor.

    Args:
        name: a key of ``EXTRACTORS``.
        weights_path: a local weights file; "" for the shipped file or the torch hub cache.
        download: allow fetching Inception weights that are not cached (see :func:`resolve_weights`).
        device: where the extractor runs.

    Raises:
        UsageError: unknown name, missing or unusable weights file (one line).
    """
    from torch_fidelity.utils import create_feature_extractor

    spec = check_name(name)
    register_with_fidelity()
    path = resolve_weights(name, weights_path, download)
    _check_state_dict(name, path)
    try:
        module = create_feature_extractor(
            spec.fidelity_name, [spec.feature_layer, spec.logits_layer], cuda=False,
            feature_extractor_weights_path=str(path), verbose=False,
        )
    except RuntimeError as e:  # load_state_dict: a mismatch state_dict_problem did not foresee
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f"{path} does not fit the {name} extractor ({reason}); "
                         f"expected {spec.weights_source}") from None
    return Extractor(name, spec, module, path, file_sha256(path)).to(device)


def write_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a randomly initialised ``inception`` state dict (95 MB) to ``path``.

    For checking the Inception plumbing and timing it offline only: the metrics it gives mean
    nothing, and their keys say so (``fid/inception-<hash>_5k``: not the reference weights).
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
        torch.manual_seed(seed)
        module = _unloaded_inception()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), path)
    return path


EXTRACTORS: dict[str, ExtractorSpec] = {
    "inception": ExtractorSpec(
        "inception-v3-compat", "inception", "2048", "logits_unbiased", channels=3, url=INCEPTION_URL,
        description="torch-fidelity's InceptionV3 (TF 2015-12-05 port): 2048-d pool3, any images",
        sha256=INCEPTION_SHA256, weights_source="torch-fidelity's weights-inception-2015-12-05-6726825d.pth",
    ),
    "lenet-mnist": ExtractorSpec(
        "lenet-mnist", "lenet", "features", "logits", channels=0, shipped=LENET_FILE,
        description="shipped digit classifier: 128-d penultimate layer, digits (28/32 px, 1 channel)",
        sha256=LENET_MNIST_SHA256,
        weights_source="the shipped lenet_mnist.pt or a file written by scripts/train_feature_extractor.py",
    ),
}
