"""Tests for gan_lightning.networks, parametrized over NETWORKS so a new arch is tested too."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.testing import assert_close

from gan_lightning.layers import GaussianNoise, VirtualBatchNorm
from gan_lightning.networks import (
    NETWORKS,
    Arch,
    ImprovedMNISTDiscriminator,
    ImprovedMNISTGenerator,
    init_dcgan_weights,
)

Z_DIM, WIDTH, B = 16, 8, 4


def shapes_for(arch: Arch) -> list[tuple[int, ...]]:
    """Data shapes an arch must handle: every supported size with 1 and 3 channels."""
    if arch.image_sizes is None:
        return [(2,), (1, 28, 28)]
    return [(c, s, s) for s in arch.image_sizes for c in (1, 3)]


CASES = [
    pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")
    for name, arch in NETWORKS.items()
    for shape in shapes_for(arch)
]
IMAGE_ARCHS = [name for name, arch in NETWORKS.items() if arch.image_sizes is not None]


def build(name: str, shape: tuple[int, ...], g_norm: str | None = None, d_norm: str | None = None):
    arch = NETWORKS[name]
    g = arch.generator(z_dim=Z_DIM, data_shape=shape, width=WIDTH, norm=g_norm or arch.g_norms[0])
    d = arch.discriminator(data_shape=shape, width=WIDTH, norm=d_norm or arch.d_norms[0])
    return g, d


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name,shape", CASES)
def test_shapes_and_features(name, shape):
    g, d = build(name, shape)
    assert g.z_dim == Z_DIM and tuple(g.data_shape) == shape
    fake = g(torch.randn(B, Z_DIM))
    assert fake.shape == (B, *shape)
    d.eval()  # BatchNorm with running stats, so both calls below compute the same function
    x = torch.randn(B, *shape)
    feats = d.features(x)
    assert feats.shape == (B, d.feature_dim)
    logits = d(x)
    assert logits.shape == (B,)
    torch.testing.assert_close(logits, d.head(feats).squeeze(1))
    # different inputs give different logits (D is not constant)
    assert not torch.allclose(logits, d(torch.randn(B, *shape) * 2))


def scale_weight_(layer: nn.Module, factor: float) -> None:
    """Multiply a layer's effective weight by `factor` in place (its scale g if weight-normalized)."""
    with torch.no_grad():
        if parametrize.is_parametrized(layer, "weight"):
            layer.parametrizations.weight.original0.mul_(factor)  # W = g v / ||v||: scale g
        else:
            layer.weight.mul_(factor)


@pytest.mark.parametrize("name,shape", [c for c in CASES if len(c.values[1]) == 3])
def test_image_generator_in_range(name, shape):
    g, _ = build(name, shape)
    last = [m for m in g.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))][-1]
    before = last.weight.detach().clone()
    scale_weight_(last, 100.0)  # push pre-activations far out: tanh must still bound them
    assert_close(last.weight, 100.0 * before)
    with torch.no_grad():
        fake = g(torch.randn(B, Z_DIM))
    assert fake.abs().max() <= 1.0
    assert fake.abs().max() > 0.9  # really saturating, so the bound is tested


def test_mlp_points_generator_unbounded():
    g = NETWORKS["mlp"].generator(z_dim=Z_DIM, data_shape=(2,), width=WIDTH, norm="batch")
    last = [m for m in g.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(100.0)
        fake = g(torch.randn(B, Z_DIM))
    assert fake.shape == (B, 2)
    assert fake.abs().max() > 1.0


@pytest.mark.parametrize("name,shape", CASES)
def test_gradients_reach_generator(name, shape):
    g, d = build(name, shape)
    d(g(torch.randn(B, Z_DIM))).sum().backward()
    for pname, p in g.named_parameters():  # frozen: improved_mnist's BatchNorm scales
        assert (p.grad is not None and p.grad.abs().sum() > 0) == p.requires_grad, pname
    for pname, p in d.named_parameters():
        assert (p.grad is not None) == p.requires_grad, pname  # frozen: improved_mnist's hidden scales


@pytest.mark.parametrize("name,shape", CASES)
def test_wrong_input_shape_raises(name, shape):
    g, d = build(name, shape)
    bad = (shape[0] + 1, *shape[1:])
    with pytest.raises(ValueError, match="shape"):
        d(torch.randn(B, *bad))
    with pytest.raises(ValueError, match="shape"):
        d.features(torch.randn(*shape))  # missing batch dimension
    with pytest.raises(ValueError, match="shape"):
        g(torch.randn(B, Z_DIM + 1))


@pytest.mark.parametrize("name", IMAGE_ARCHS)
@pytest.mark.parametrize("size", [16, 48])
def test_unsupported_image_size_raises(name, size):
    arch = NETWORKS[name]
    supported = str(list(arch.image_sizes))
    with pytest.raises(ValueError, match=supported.replace("[", r"\[").replace("]", r"\]")):
        arch.generator(z_dim=Z_DIM, data_shape=(3, size, size), width=WIDTH, norm=arch.g_norms[0])
    with pytest.raises(ValueError, match="supported"):
        arch.discriminator(data_shape=(3, size, size), width=WIDTH, norm=arch.d_norms[0])


@pytest.mark.parametrize("name, shape", CASES)
def test_discriminator_with_k_outputs_gives_class_logits(name, shape):
    d = NETWORKS[name].discriminator(data_shape=shape, width=WIDTH, norm=NETWORKS[name].d_norms[0], num_outputs=3)
    d.eval()  # improved_mnist's noise layers are on in training mode
    x = torch.randn(4, *shape)
    assert d(x).shape == (4, 3)
    torch.testing.assert_close(d(x), d.head(d.features(x)))
    with pytest.raises(ValueError):
        NETWORKS[name].discriminator(data_shape=shape, width=WIDTH, norm=NETWORKS[name].d_norms[0], num_outputs=0)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_declared_norm_builds_and_unknown_raises(name):
    arch = NETWORKS[name]
    shape = shapes_for(arch)[-1]
    for g_norm in arch.g_norms:
        assert build(name, shape, g_norm=g_norm)[0](torch.randn(B, Z_DIM)).shape == (B, *shape)
    for d_norm in arch.d_norms:
        assert build(name, shape, d_norm=d_norm)[1](torch.randn(B, *shape)).shape == (B,)
    with pytest.raises(ValueError, match="choose one of"):
        arch.generator(z_dim=Z_DIM, data_shape=shape, width=WIDTH, norm="spectral")
    with pytest.raises(ValueError, match="choose one of"):
        arch.discriminator(data_shape=shape, width=WIDTH, norm="spectral")


@pytest.mark.parametrize("name,shape", CASES)
def test_norm_none_has_no_batchnorm(name, shape):
    arch = NETWORKS[name]
    assert "none" in arch.g_norms and "none" in arch.d_norms
    g, d = build(name, shape, g_norm="none", d_norm="none")
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, VirtualBatchNorm)
    assert not [m for m in [*g.modules(), *d.modules()] if isinstance(m, norms)]
    # without BatchNorm, D scores each example alone: logits do not depend on the rest of the batch
    d.eval()  # switches off GaussianNoise layers (improved_mnist), which are random per call
    x = torch.randn(B, *shape)
    torch.testing.assert_close(d(x)[:1], d(x[:1]))


def test_dcgan_discriminator_batchnorm_skips_first_block():
    d = NETWORKS["dcgan"].discriminator(data_shape=(3, 64, 64), width=WIDTH, norm="batch")
    layers = list(d.body)
    assert isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.LeakyReLU)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3  # 64 -> 32 -> 16 -> 8 -> 4
    assert d.feature_dim == 8 * WIDTH * 4 * 4


def test_init_dcgan_weights():
    conv, bn = nn.Conv2d(64, 64, 4), nn.BatchNorm2d(4096)
    nn.init.constant_(conv.bias, 1.0)
    conv.apply(init_dcgan_weights)
    bn.apply(init_dcgan_weights)
    torch.testing.assert_close(conv.weight.std(), torch.tensor(0.02), atol=1e-3, rtol=0)
    torch.testing.assert_close(conv.weight.mean(), torch.tensor(0.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(conv.bias, torch.zeros(64))
    torch.testing.assert_close(bn.weight.mean(), torch.tensor(1.0), atol=2e-3, rtol=0)
    torch.testing.assert_close(bn.weight.std(), torch.tensor(0.02), atol=2e-3, rtol=0)
    torch.testing.assert_close(bn.bias, torch.zeros(4096))


# -- virtual batch norm in G (Salimans et al. 2016, sec. 3.5) -----------------------------------
VBN_CASES = [c for c in CASES if "vbn" in NETWORKS[c.values[0]].g_norms]
REF = 6  # reference batch size, small to keep the tests fast


def build_vbn(name: str, shape: tuple[int, ...]) -> nn.Module:
    return NETWORKS[name].generator(z_dim=Z_DIM, data_shape=shape, width=WIDTH, norm="vbn", vbn_ref_size=REF)


@pytest.mark.parametrize("name,shape", VBN_CASES)
def test_vbn_generator_output_independent_of_batch(name, shape):
    g = build_vbn(name, shape)
    assert sum(isinstance(m, VirtualBatchNorm) for m in g.modules()) >= 2
    assert not [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    z = torch.randn(5, Z_DIM)
    batch = g(z)
    assert batch.shape == (5, *shape)
    assert_close(g(z[:1]), batch[:1])  # z_0 alone gives what it gives in a batch
    assert_close(g(z[3:4]), batch[3:4])
    # sanity: with BatchNorm the same comparison fails, the output depends on the batch
    bn = NETWORKS[name].generator(z_dim=Z_DIM, data_shape=shape, width=WIDTH, norm="batch")
    assert not torch.allclose(bn(z[:2]), bn(z)[:2], atol=1e-4)


@pytest.mark.parametrize("name,shape", VBN_CASES)
def test_vbn_generator_eval_equals_train_and_gradients_flow(name, shape):
    g = build_vbn(name, shape)
    z = torch.randn(3, Z_DIM)
    out = g(z)
    out.square().mean().backward()
    for pname, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    g.eval()  # no running statistics: the same function in eval mode
    with torch.no_grad():
        assert_close(g(z), out.detach())


@pytest.mark.parametrize("name,shape", VBN_CASES)
def test_vbn_reference_batch_saved_and_restored(name, shape):
    g = build_vbn(name, shape)
    assert g.ref_z.shape == (REF, Z_DIM) and "ref_z" in g.state_dict()
    batch_norm_g = NETWORKS[name].generator(z_dim=Z_DIM, data_shape=shape, width=WIDTH, norm="batch")
    assert "ref_z" not in batch_norm_g.state_dict()
    with torch.no_grad():
        g.ref_z.normal_()  # a reference batch other than the one a fresh build draws
    fresh = build_vbn(name, shape)
    z = torch.randn(2, Z_DIM)
    assert not torch.allclose(fresh(z), g(z), atol=1e-4)  # the reference batch matters
    fresh.load_state_dict(g.state_dict())
    assert_close(fresh.ref_z, g.ref_z)
    assert_close(fresh(z), g(z))


# -- improved_mnist (Salimans et al. 2016 reference MNIST networks) ----------------------------
def test_improved_mnist_layout():
    arch = NETWORKS["improved_mnist"]
    g = arch.generator(z_dim=100, data_shape=(1, 28, 28), width=WIDTH, norm="batch")
    d = arch.discriminator(data_shape=(1, 28, 28), width=WIDTH, norm="none")
    g_sizes = [m.out_features for m in g.modules() if isinstance(m, nn.Linear)]
    d_sizes = [m.out_features for m in d.modules() if isinstance(m, nn.Linear)]
    assert g_sizes == [500, 500, 784] and d_sizes == [1000, 500, 250, 250, 250, 1]  # width is ignored
    assert d.feature_dim == 250
    assert [m.std for m in d.modules() if isinstance(m, GaussianNoise)] == [0.6] + [0.5] * 5
    assert all(parametrize.is_parametrized(m, "weight") for m in d.modules() if isinstance(m, nn.Linear))
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert not torch.allclose(d(x), d(x))  # training mode: noise on every call
    d.eval()
    assert_close(d(x), d(x))
    assert_close(d(x), d.head(d.features(x)).squeeze(1))
    k = arch.discriminator(data_shape=(1, 28, 28), width=WIDTH, norm="none", num_outputs=10)
    assert k(x).shape == (4, 10)  # K class logits for the semi-supervised discriminator
    scales = [m.parametrizations.weight.original0 for m in d.modules() if isinstance(m, nn.Linear)]
    assert [g.requires_grad for g in scales] == [False] * 5 + [True]  # hidden scales frozen, as the reference


def test_improved_mnist_follows_the_reference_recipe():
    from gan_lightning.networks.improved_mnist import D_INIT_STD, NormalToUniform, SigmoidOutput

    torch.manual_seed(0)
    g = ImprovedMNISTGenerator(z_dim=100, norm="batch")
    u = g.net[0](torch.randn(20000, 4))
    assert isinstance(g.net[0], NormalToUniform) and 0 < u.min() and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.002  # U(0, 1)
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 2 and all(not bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)  # shift only
    out = g.net[-2]
    assert isinstance(g.net[-1], SigmoidOutput) and torch.all(out.bias == 0)
    a = torch.linspace(-6, 6, 13)
    assert_close(g.net[-1](a), 2 * torch.sigmoid(a) - 1)  # the reference's sigmoid, on [-1, 1]
    hidden = [m for m in g.modules() if isinstance(m, nn.Linear)][1]  # 500 -> 500, Glorot uniform
    bound = math.sqrt(6 / (500 + 500))
    biggest = float(hidden.weight.detach().abs().max())
    assert 0.95 * bound < biggest <= bound
    d = ImprovedMNISTDiscriminator(num_outputs=10)
    for m in d.modules():
        if isinstance(m, nn.Linear):
            v = m.parametrizations.weight.original1.detach()
            assert abs(float(v.std()) - D_INIT_STD) < 0.1 * D_INIT_STD and torch.all(m.bias == 0)
