"""The ``lenet-mnist`` feature extractor: a small digit classifier shipped with the package
(``gan_lightning/weights/lenet_mnist.pt``), run by torch-fidelity like its own extractors. Its 128-d
penultimate layer feeds FID/KID/precision-recall and its 10 logits the Inception score.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
LENET_FILE = "lenet_mnist.pt"  # the shipped weights under WEIGHTS_DIR

def lenet_input(pixels: Tensor) -> Tensor:
    """uint8 images of any size, grey or RGB, to the classifier's input.

    Args:
        pixels: (B, 1 or 3, H, W) uint8 in [0, 255].

    Returns:
        (B, 1, 32, 32) float in [-1, 1], the model range ``to_uint8`` maps from.
    """
    x = pixels.float() / 127.5 - 1.0  # inverse of gan_lightning.images.to_uint8
    if x.shape[1] == 3:  # ITU-R 601 luma, as PIL's "L" mode
        x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # (B, 1, H, W)
    if x.shape[-2:] != (LeNetMNIST.INPUT_SIZE,) * 2:
        x = F.interpolate(x, size=LeNetMNIST.INPUT_SIZE, mode="bilinear", align_corners=False, antialias=True)
    return x


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class LeNetMNIST(nn.Module):
    """A LeNet-style digit classifier (LeCun et al. 1998) with BatchNorm: 32x32 grey -> 10 logits.

    ``features`` is the 128-d penultimate layer (after its ReLU); ``head`` maps it to the logits
    the Inception score uses. ``embed`` is ``features`` divided by ``feature_rms``, their root
    mean square over the training digits (a buffer, saved with the weights): FID/KID/precision-
    recall use it, so KID's kernel ``(x.y / d + 1)^3`` sees O(1) values, as with Inception's
    pool3 features, instead of being dominated by its cubic term.
    """

    INPUT_SIZE = 32
    FEATURE_DIM = 128
    NUM_CLASSES = 10

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_block(1, 32, 5),   # (B, 32, 16, 16)
            _conv_block(32, 64, 3),  # (B, 64, 8, 8)
            _conv_block(64, 64, 3),  # (B, 64, 4, 4)
            nn.Flatten(),            # (B, 1024)
            nn.Linear(64 * 4 * 4, self.FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)  # training only
        self.head = nn.Linear(self.FEATURE_DIM, self.NUM_CLASSES)
        self.register_buffer("feature_rms", torch.ones(()))  # set after training

    def features(self, x: Tensor) -> Tensor:
        """(B, 1, 32, 32) in [-1, 1] -> (B, 128) penultimate activations."""
        return self.body(x)

    def embed(self, features: Tensor) -> Tensor:
        """(B, 128) features -> (B, 128) features of unit root mean square over the training digits."""
        return features / self.feature_rms

    def forward(self, x: Tensor) -> Tensor:
        """(B, 1, 32, 32) in [-1, 1] -> (B, 10) logits."""
        return self.head(self.dropout(self.features(x)))


class LeNetFeatureExtractor(FeatureExtractorBase):
    """:class:`LeNetMNIST` as a torch-fidelity feature extractor (registered as ``lenet-mnist``).

    Layers: ``features`` (B, 128), ``LeNetMNIST.embed`` of the penultimate layer, for FID, KID
    and precision/recall; ``logits`` (B, 10) for IS.

    Args:
        name: the registered name.
        features_list: layers to return, a subset of ``("features", "logits")``.
        feature_extractor_weights_path: a state dict of LeNetMNIST; default the shipped file.
            Loaded with ``weights_only=True``.
    """

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        self.net = LeNetMNIST()
        path = feature_extractor_weights_path or WEIGHTS_DIR / LENET_FILE
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] in (1, 3), f"Input is not Bx1xHxW or Bx3xHxW: {tuple(x.shape)}")
        features = self.net.features(lenet_input(x))  # (B, 128)
        out = {"features": self.net.embed(features), "logits": self.net.head(features)}  # logits (B, 10)
        return tuple(out[name] for name in self.features_list)
