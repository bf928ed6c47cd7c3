"""Density and coverage (Naeem et al. 2020): equal to the authors' prdc package, their expected values
for one distribution, chunk-independent, and what they say about a generator collapsed onto one digit."""

import pytest
import torch

from gan_lightning.data.datasets import DATASETS
from gan_lightning.metrics.density_coverage import density_coverage, knn_radii
from gan_lightning.metrics.extractors import load_extractor
from gan_lightning.metrics.fidelity import FidelityMetrics, Reference


def gaussians(n: int, m: int, dim: int, shift: float = 0.0, scale: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randn(m, dim, generator=g) * scale + shift


@pytest.mark.parametrize("n, m, dim, shift, scale, k", [(600, 400, 8, 0.3, 1.2, 5), (300, 700, 32, 0.0, 0.7, 3),
                                                       (500, 500, 2, 1.0, 1.0, 5)])
def test_equals_the_authors_implementation(n, m, dim, shift, scale, k):
    from prdc import compute_prdc

    real, fake = gaussians(n, m, dim, shift, scale)
    ours = density_coverage(real, fake, k)
    theirs = compute_prdc(real.numpy(), fake.numpy(), k)
    assert ours["density"] == pytest.approx(float(theirs["density"]), abs=1e-9)
    assert ours["coverage"] == pytest.approx(float(theirs["coverage"]), abs=1e-9)


def test_one_distribution_gives_the_papers_expected_values():
    # Naeem et al. 2020, Sec. 4: for P = Q, E[density] = 1 and E[coverage] = 1 - (1/2)^k.
    values = [density_coverage(*gaussians(2000, 2000, 16, seed=s)) for s in range(3)]
    assert sum(v["density"] for v in values) / 3 == pytest.approx(1.0, abs=0.05)
    assert sum(v["coverage"] for v in values) / 3 == pytest.approx(1 - 0.5 ** 5, abs=0.01)


def test_chunks_do_not_change_the_numbers():
    real, fake = gaussians(300, 200, 4, 0.5)
    assert density_coverage(real, fake, chunk=7) == density_coverage(real, fake, chunk=10_000)


def test_radii_exclude_the_point_itself():
    real = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(real, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(real, k=2).tolist() == [3.0, 2.0, 3.0, 6.0]


@pytest.mark.parametrize("real, fake", [(torch.zeros(5, 2), torch.zeros(3, 2)),  # 5 real <= k
                                        (torch.zeros(10, 2), torch.zeros(3, 3)), (torch.zeros(10, 2), torch.zeros(0, 2))])
def test_bad_shapes_raise(real, fake):
    with pytest.raises(ValueError):
        density_coverage(real, fake)


def test_a_generator_collapsed_onto_one_digit_has_precision_but_neither_recall_nor_coverage(tmp_path):
    """The 400 train digits of class 1 as the "generated" samples, scored against the 1,000 test
    digits in LeNet's feature space, beside 400 train digits drawn from every class."""
    images, labels = DATASETS["mnist5k"].load("train", 32, "data", False).tensors
    metrics = FidelityMetrics(Reference("mnist5k", "test", 32), load_extractor("lenet-mnist"), ("pr", "dc"),
                              cache=tmp_path)
    every = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:400]
    ones, every = metrics.evaluate(images[labels == 1][:400]).values, metrics.evaluate(images[every]).values
    assert ones["precision"] > 0.8 and every["precision"] > 0.8  # real digits both: realistic samples
    # one class of ten: about a tenth of the real neighbourhoods hold a sample
    assert ones["recall"] < 0.2 and ones["coverage"] < 0.2
    assert every["recall"] > 0.7 and every["coverage"] > 0.7
