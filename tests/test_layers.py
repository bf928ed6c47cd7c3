"""Layers of Salimans et al. 2016 against the paper's formulas on small hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.testing import assert_close

from gan_lightning.layers import (
    GaussianNoise,
    MinibatchDiscrimination,
    VirtualBatchNorm,
    add_minibatch_discrimination,
    reference_latents,
    virtual_batch_norm,
    wn_linear,
    init_weight_norm_from_data,
    minibatch_features,
)
from gan_lightning.networks import MLPDiscriminator

E = math.exp


# -- minibatch discrimination -------------------------------------------------------------------
def hand_set_mbd(weight_norm: bool) -> MinibatchDiscrimination:
    """A = 2, B = 2, C = 2 with T[:, 0, :] = I (M_{i,0} = f_i) and T[:, 1, :] = [[1, 1], [0, 0]]
    (M_{i,1} = (f_i1, f_i1)). Every column of T has unit norm, so weight norm leaves T as is."""
    mbd = MinibatchDiscrimination(2, kernels=2, kernel_dim=2, weight_norm=weight_norm, bias=False)
    T = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]]])  # (A, B, C)
    with torch.no_grad():
        mbd.weight.copy_(T)
    assert_close(mbd.T, T)
    return mbd


@pytest.mark.parametrize("weight_norm", [False, True])
def test_minibatch_discrimination_matches_hand_computation(weight_norm):
    mbd = hand_set_mbd(weight_norm)
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (N=3, A=2)
    # kernel 0 (M = f): L1 distances d01 = 2, d02 = 1, d12 = 1
    # kernel 1 (M = (f_1, f_1)): rows (1,1), (0,0), (1,1): d01 = 2, d02 = 0, d12 = 2
    o = torch.tensor([
        [E(-2) + E(-1), E(-2) + E(0)],
        [E(-2) + E(-1), E(-2) + E(-2)],
        [E(-1) + E(-1), E(0) + E(-2)],
    ])  # (N, B), self-pairs left out
    out = mbd(f)
    assert out.shape == (3, mbd.out_features) == (3, 4)
    assert_close(out, torch.cat([f, o], dim=1))


def test_minibatch_discrimination_bias_and_weight_norm_scale():
    mbd = hand_set_mbd(weight_norm=True)
    mbd.bias = nn.Parameter(torch.tensor([0.5, -1.0]))
    with torch.no_grad():
        mbd.weight.mul_(7.0)  # direction unchanged: weight norm removes the scale
        mbd.log_scale.fill_(math.log(2.0))  # every column now has norm 2: distances double
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # kernel 0: d01 = 2 -> 4; kernel 1: d01 = 2 -> 4
    o = torch.tensor([[E(-4) + 0.5, E(-4) - 1.0], [E(-4) + 0.5, E(-4) - 1.0]])
    assert_close(mbd(f)[:, 2:], o)


def test_minibatch_discrimination_mixes_examples():
    mbd = MinibatchDiscrimination(6, kernels=5, kernel_dim=3)
    f = torch.randn(4, 6)
    out = mbd(f)
    g = f.clone()
    g[2] += 0.5  # change ANOTHER example than 0
    out2 = mbd(g)
    assert_close(out2[0, :6], out[0, :6])  # f(x_0) passes through
    assert (out2[0, 6:] - out[0, 6:]).abs().max() > 1e-4  # o(x_0) sees the change of x_2


def test_minibatch_discrimination_excludes_self_pair():
    mbd = MinibatchDiscrimination(6, kernels=5, kernel_dim=3)
    f = torch.randn(1, 6)
    assert_close(mbd(f), torch.cat([f, torch.zeros(1, 5)], dim=1))  # batch of one: o = 0 (bias starts at 0)
    # two identical examples: c_b = exp(0) = 1 for the other one only, so o = 1
    assert_close(mbd(f.repeat(2, 1))[:, 6:], torch.ones(2, 5))


def test_minibatch_discrimination_gradients_and_shape_check():
    mbd = MinibatchDiscrimination(6, kernels=5, kernel_dim=3)
    f = torch.randn(4, 6, requires_grad=True)
    mbd(f)[:, 6:].sum().backward()
    for name, p in mbd.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert f.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        mbd(torch.randn(4, 7))
    with pytest.raises(ValueError, match=">= 1"):
        MinibatchDiscrimination(6, kernels=0)


def reference_minibatch_features(f, T):
    """The implementation before issue 12 (cdist over (B, N, C), exp, self-pairs masked): the reference."""
    m = torch.einsum("na,abc->bnc", f, T)  # (B, N, C)
    dist = torch.cdist(m, m, p=1)  # (B, N, N)
    self_pair = torch.eye(f.shape[0], dtype=torch.bool, device=f.device)
    return torch.exp(-dist).masked_fill(self_pair, 0.0).sum(dim=2).transpose(0, 1)  # (N, B)


def reference_forward(mbd, f):
    o = reference_minibatch_features(f, mbd.T)
    return torch.cat([f, o if mbd.bias is None else o + mbd.bias], dim=1)


def outputs_and_grads(forward, mbd, f, upstream):
    """forward(mbd, f), then the gradients of <forward, upstream> w.r.t. f and every parameter."""
    f = f.detach().clone().requires_grad_(True)
    out = forward(mbd, f)
    return out, torch.autograd.grad((out * upstream).sum(), [f, *mbd.parameters()])


def random_mbd(a, b, c, weight_norm=True, bias=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    mbd = MinibatchDiscrimination(a, kernels=b, kernel_dim=c, weight_norm=weight_norm, bias=bias).to(dtype)
    with torch.no_grad():  # away from the initial values, so every parameter matters
        for p in mbd.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return mbd


# (N, A, B, C, tile): N = 1 and 2, several strips of 32 rows (N = 70: 32 + 32 + 6), kernels split
# over tiles (small tile budgets), C = 1, and tiles of one kernel and one row
MBD_SHAPES = [
    (1, 6, 5, 3, None), (2, 6, 5, 3, None), (5, 4, 3, 1, None), (9, 7, 4, 5, 40), (70, 8, 6, 5, None),
    (70, 8, 6, 5, 3000), (33, 3, 2, 2, 1),
]


@pytest.mark.parametrize("weight_norm, bias", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("n, a, b, c, tile", MBD_SHAPES)
def test_minibatch_discrimination_matches_reference_forward_and_gradients(n, a, b, c, tile, weight_norm, bias):
    mbd = random_mbd(a, b, c, weight_norm, bias)
    f = torch.randn(n, a, dtype=torch.float64) * 0.7
    upstream = torch.randn(n, a + b, dtype=torch.float64)

    def tiled(m, x):  # the module's forward with the tile size of this case
        o = minibatch_features(x, m.T, tile)
        return torch.cat([x, o if m.bias is None else o + m.bias], dim=1)

    out, grads = outputs_and_grads(tiled, mbd, f, upstream)
    ref_out, ref_grads = outputs_and_grads(reference_forward, mbd, f, upstream)
    assert_close(out, ref_out)
    assert_close(grads, ref_grads)
    if tile is None:  # the module itself
        assert_close(outputs_and_grads(lambda m, x: m(x), mbd, f, upstream), (ref_out, ref_grads))


def test_minibatch_discrimination_float32_matches_reference_at_paper_size():
    mbd = random_mbd(250, 100, 5, dtype=torch.float32)
    f = torch.relu(torch.randn(128, 250))  # ReLU features, as D's penultimate layer gives
    upstream = torch.randn(128, 350)
    out, grads = outputs_and_grads(lambda m, x: m(x), mbd, f, upstream)
    ref_out, ref_grads = outputs_and_grads(reference_forward, mbd, f, upstream)
    assert_close(out, ref_out)
    for g, ref in zip(grads, ref_grads):  # sums of ~N terms that cancel: float32 rounding of the largest
        assert_close(g, ref, rtol=1.3e-6, atol=4e-6 * ref.abs().max().item())


def test_minibatch_discrimination_is_permutation_equivariant():
    mbd = random_mbd(6, 5, 3)
    f = torch.randn(40, 6, dtype=torch.float64)
    upstream = torch.randn(40, 11, dtype=torch.float64)
    perm = torch.randperm(40)
    out, (grad_f, *grad_params) = outputs_and_grads(lambda m, x: m(x), mbd, f, upstream)
    p_out, (p_grad_f, *p_grad_params) = outputs_and_grads(lambda m, x: m(x), mbd, f[perm], upstream[perm])
    assert_close(p_out, out[perm])  # each example's output does not depend on where it sits
    assert_close(p_grad_f, grad_f[perm])
    assert_close(p_grad_params, grad_params)


def test_minibatch_discrimination_tied_examples_match_reference_gradients():
    # identical examples: |M_i - M_j| = 0, where |x| has no derivative; both give it sign(0) = 0
    mbd = random_mbd(6, 5, 3)
    f = torch.randn(4, 6, dtype=torch.float64)
    f = torch.cat([f, f[:2], torch.zeros(2, 6, dtype=torch.float64)])  # rows 4, 5 repeat 0, 1; 6 and 7 tie
    upstream = torch.randn(8, 11, dtype=torch.float64)
    assert_close(outputs_and_grads(lambda m, x: m(x), mbd, f, upstream),
                 outputs_and_grads(reference_forward, mbd, f, upstream))


def test_minibatch_discrimination_double_backward_matches_reference():
    # a gradient penalty (penalties.GradientPenalty) differentiates D's input gradient again
    mbd = random_mbd(5, 4, 3)
    f = torch.randn(6, 5, dtype=torch.float64)
    results = []
    for forward in (lambda m, x: m(x), reference_forward):
        x = f.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(forward(mbd, x).pow(2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), [x, *mbd.parameters()]))
    assert_close(results[0], results[1])
    x = f[:4].clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda v: mbd(v)[:, 5:], (x,))


def test_minibatch_discrimination_empty_batch_and_dtypes():
    mbd = MinibatchDiscrimination(6, kernels=5, kernel_dim=3)
    assert mbd(torch.randn(0, 6)).shape == (0, 11)
    f = torch.randn(8, 6)
    expected = mbd(f)
    low = mbd.to(torch.bfloat16)(f.bfloat16())  # bf16-true: computed in float32, returned in bfloat16
    assert low.dtype == torch.bfloat16
    assert_close(low.float(), expected, rtol=0.05, atol=0.05)
    mbd.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision: o stays float32, as cdist gave
        assert mbd(f).dtype == torch.float32


def test_minibatch_discrimination_reference_init():
    mbd = MinibatchDiscrimination(6, kernels=4, kernel_dim=3)
    assert torch.equal(mbd.bias, torch.zeros(4)) and torch.equal(mbd.log_scale, torch.zeros(4, 3))  # default
    f = torch.randn(32, 6) * 3
    before = mbd.init_from_data(f)
    m = torch.einsum("na,abc->bnc", f, mbd.T)  # (B, N, C) after the rescaling
    dist = torch.cdist(m, m, p=1) + torch.diag(torch.full((32,), float("inf")))
    assert_close(dist.amin(dim=2).mean(dim=1), torch.full((4,), 2.0))  # mean nearest-neighbour distance 2
    assert_close(mbd(f)[:, 6:].mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)  # o centred on the batch
    assert before.shape == (4,) and (before != 2.0).all()
    plain = MinibatchDiscrimination(6, kernels=4, kernel_dim=3, weight_norm=False, bias=False)
    plain.init_from_data(f)
    m = torch.einsum("na,abc->bnc", f, plain.weight)
    dist = torch.cdist(m, m, p=1) + torch.diag(torch.full((32,), float("inf")))
    assert_close(dist.amin(dim=2).mean(dim=1), torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="N >= 2"):
        mbd.init_from_data(f[:1])
    with pytest.raises(ValueError, match="differ"):
        mbd.init_from_data(f[:1].repeat(5, 1))


def test_add_minibatch_discrimination_replaces_head_only():
    d = MLPDiscriminator(data_shape=(2,), width=8)
    x = torch.randn(5, 2)
    features = d.features(x)
    add_minibatch_discrimination(d, kernels=4, kernel_dim=3)
    assert_close(d.features(x), features)  # features (what feature matching sees) are unchanged
    mbd, linear = d.head
    assert isinstance(mbd, MinibatchDiscrimination) and mbd.out_features == 8 + 4
    assert linear.in_features == 12 and linear.out_features == 1
    assert d(x).shape == (5,)
    assert torch.equal(linear.weight[:, 8:], torch.zeros(1, 4))  # starts as a plain head on f ...
    d(x).sum().backward()
    assert linear.weight.grad[:, 8:].abs().sum() > 0  # ... and learns to read o
    # once it reads o, the logit of example 0 depends on example 1
    with torch.no_grad():
        linear.weight[:, 8:] = 1.0
    y = x.clone()
    y[1] += 1.0
    assert not torch.allclose(d(x)[0], d(y)[0])


# -- virtual batch norm -------------------------------------------------------------------------
def test_virtual_batch_norm_by_hand():
    x = torch.tensor([[1.0], [3.0], [5.0]])  # reference rows 1, 3; one example 5
    out = virtual_batch_norm(x, ref_size=2, eps=0.0)
    # reference: mean 2, var 1. example: moments of {1, 3, 5}: mean 3, var 8/3
    assert_close(out, torch.tensor([[-1.0], [1.0], [2.0 / math.sqrt(8.0 / 3.0)]]))


@pytest.mark.parametrize("shape", [(5,), (3, 4, 4)])
def test_virtual_batch_norm_is_batch_norm_of_reference_plus_example(shape):
    ref_size, eps = 6, 1e-5
    x = torch.randn(ref_size + 4, *shape) * 3 + 1
    out = virtual_batch_norm(x, ref_size, eps)
    ref = x[:ref_size]
    assert_close(out[:ref_size], F.batch_norm(ref, None, None, training=True, eps=eps))
    for i in range(ref_size, len(x)):  # each example: batch norm over the reference batch plus itself
        alone = F.batch_norm(torch.cat([ref, x[i : i + 1]]), None, None, training=True, eps=eps)
        assert_close(out[i], alone[-1])


def test_virtual_batch_norm_example_independent_of_its_batch():
    vbn = VirtualBatchNorm(3, ref_size=4)
    with torch.no_grad():
        vbn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        vbn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    ref, xs = torch.randn(4, 3, 2, 2), torch.randn(5, 3, 2, 2)
    batch = vbn(torch.cat([ref, xs]))
    alone = vbn(torch.cat([ref, xs[2:3]]))
    assert_close(alone[-1], batch[4 + 2])
    vbn.eval()  # no running statistics: eval computes the same function
    assert_close(vbn(torch.cat([ref, xs])), batch)


def test_virtual_batch_norm_checks_inputs():
    vbn = VirtualBatchNorm(4, ref_size=8)
    with pytest.raises(ValueError, match="reference rows"):
        vbn(torch.randn(8, 4))  # only the reference batch, no example
    with pytest.raises(ValueError, match=r"\(B, 4"):
        vbn(torch.randn(10, 5))
    with pytest.raises(ValueError):
        VirtualBatchNorm(4, ref_size=0)


def test_reference_latents_fixed_and_leave_global_rng_alone():
    state = torch.get_rng_state()
    a, b = reference_latents(8, 3), reference_latents(8, 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert_close(a, b)
    assert a.shape == (8, 3)
    assert not torch.allclose(reference_latents(8, 3, seed=1), a)


# -- Gaussian noise and weight norm -------------------------------------------------------------
def test_gaussian_noise_train_only():
    x = torch.zeros(20000)
    noise = GaussianNoise(0.5)
    y = noise(x)
    assert_close(y.std(), torch.tensor(0.5), atol=0.01, rtol=0)
    assert_close(y.mean(), torch.tensor(0.0), atol=0.01, rtol=0)
    noise.eval()
    assert torch.equal(noise(x), x)
    off = GaussianNoise(0.0)
    assert torch.equal(off(x), x)  # std 0: identity even in training
    with pytest.raises(ValueError, match=">= 0"):
        GaussianNoise(-0.1)


def test_wn_linear():
    torch.manual_seed(0)
    layer = wn_linear(6, 3)
    assert parametrize.is_parametrized(layer, "weight")
    v = layer.parametrizations.weight.original1  # direction (3, 6)
    g = layer.parametrizations.weight.original0  # scale (3, 1)
    assert_close(layer.weight, g * v / v.norm(dim=1, keepdim=True))
    assert_close(g.squeeze(1), v.norm(dim=1))  # default: PyTorch's g = ||v||, the plain Linear's function
    unit = wn_linear(6, 3, scale=1.0)
    assert_close(unit.weight.norm(dim=1), torch.ones(3))  # reference init: unit-norm rows
    with torch.no_grad():
        unit.parametrizations.weight.original1.mul_(10.0)
    assert_close(unit.weight.norm(dim=1), torch.ones(3))  # the direction's scale does not matter


def test_data_dependent_init_gives_each_weight_normalized_unit_zero_mean_unit_std():
    torch.manual_seed(0)
    net = nn.Sequential(wn_linear(5, 7, scale=1.0), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), wn_linear(6, 3, scale=1.0))
    x = torch.randn(64, 5) * 4 + 2  # far from zero mean, unit std
    plain_before = net[2].weight.clone()
    assert init_weight_norm_from_data(net, x) == 2
    outputs = {}
    for i in (0, 4):
        net[i].register_forward_hook(lambda m, inp, out, i=i: outputs.__setitem__(i, out))
    net(x)
    for i in (0, 4):  # the second measured after the first was initialized
        assert_close(outputs[i].mean(0), torch.zeros(outputs[i].shape[1]), atol=1e-5, rtol=0)
        assert_close(outputs[i].std(0, unbiased=False), torch.ones(outputs[i].shape[1]), atol=1e-4, rtol=0)
    assert_close(net[2].weight, plain_before)  # a plain Linear is left alone
    assert init_weight_norm_from_data(nn.Sequential(nn.Linear(5, 2)), x) == 0
    with pytest.raises(ValueError, match="at least 2"):
        init_weight_norm_from_data(net, x[:1])
