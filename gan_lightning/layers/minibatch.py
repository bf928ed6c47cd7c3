"""Minibatch discrimination (Salimans et al. 2016, sec. 3.2): D sees how close each example is to
the others in its batch, so a G that collapses onto few modes is easy to spot.

Reference code: openai/improved-gan (``mnist_svhn_cifar10/nn.py`` and ``imagenet/ops.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# -- minibatch discrimination -----------------------------------------------------------------
# The pairwise work is done in tiles: a strip of MBD_TILE_ROWS rows i against the columns j >= i0
# of its first row (the upper triangle, each pair once), for as many kernels b as fit in a work
# buffer of at most `max_tile_elements` (C * kernels * rows * columns) values. On the CPU a tile of
# 2^20 float32 (4 MiB) keeps the buffer in cache while Python's per-op cost stays small.
MBD_TILE_ROWS = 32
MBD_CPU_TILE_ELEMENTS = 1 << 20
MBD_ACCELERATOR_TILE_ELEMENTS = 1 << 26  # GPUs: few large tiles (few kernel launches)
_LOG2_E = math.log2(math.e)  # exp(-x) = exp2(-x log2 e); exp2 is about twice as fast as exp on the CPU


def _mbd_tiles(kernels: int, n: int, dim: int, max_elements: int) -> list[tuple[int, int, int, int]]:
    """(b0, b1, i0, i1): kernels b0:b1, rows i0:i1 against the columns i0:n, covering every pair i <= j once."""
    tiles = []
    for i0 in range(0, n, MBD_TILE_ROWS):
        i1 = min(i0 + MBD_TILE_ROWS, n)
        k = min(kernels, max(1, max_elements // (dim * (i1 - i0) * (n - i0))))
        tiles += [(b0, min(b0 + k, kernels), i0, i1) for b0 in range(0, kernels, k)]
    return tiles


def _strip_differences(m: Tensor, tile: tuple[int, int, int, int], buf: Tensor) -> Tensor:
    """M_{i,b,c} - M_{j,b,c} of one tile, written into ``buf``: (C, k, t, L), L = N - i0 columns j >= i0."""
    b0, b1, i0, i1 = tile
    rows, cols = m[:, b0:b1, i0:i1, None], m[:, b0:b1, None, i0:]  # (C, k, t, 1), (C, k, 1, L)
    shape = (m.shape[0], b1 - b0, i1 - i0, m.shape[2] - i0)
    return torch.sub(rows, cols, out=buf[: math.prod(shape)].view(shape))


class _PairwiseCloseness(torch.autograd.Function):
    """o_{b,i} = sum_{j != i} exp(-sum_c |m_{c,b,i} - m_{c,b,j}|) for m of shape (C, B, N), in tiles.

    Memory: the closeness c_b(x_i, x_j) of the upper triangle (B N (N + 32) / 2 values) is kept for
    the backward pass, plus one work buffer of at most ``max_elements`` values; nothing of size
    B N^2 C. (The ``torch.cdist(p=1)`` version it replaces kept three (B, N, N) tensors and was
    slow on the CPU: its loop over pairs vectorizes over the C = 5 values of a kernel.)
    Backward, with W_ij = (g_i + g_j) c_ij (c symmetric, 0 on the diagonal):
        d o / d m_{c,b,k} . g = -sum_j W_kj sign(m_{c,b,k} - m_{c,b,j}),
    each pair of the triangle adding to its row k and, with the opposite sign, to its column j.
    sign(0) = 0 as in autograd's |x|, so tied examples (two identical rows) get no gradient from
    their pair. With ``create_graph=True`` (a gradient penalty through D) the backward runs as
    differentiable dense ops instead, (C, B, N, N) memory as the old implementation needed.
    """

    @staticmethod
    def forward(ctx, m: Tensor, max_elements: int) -> Tensor:  # m (C, B, N) -> (B, N)
        dim, kernels, n = m.shape
        mc = m.contiguous()
        o = m.new_zeros(kernels, n)
        tiles = _mbd_tiles(kernels, n, dim, max_elements)
        buf = m.new_empty(max(dim * (b1 - b0) * (i1 - i0) * (n - i0) for b0, b1, i0, i1 in tiles))
        closeness = []
        for tile in tiles:
            b0, b1, i0, i1 = tile
            dist = _strip_differences(mc, tile, buf).abs_().sum(0)  # (k, t, L): ||M_{i,b} - M_{j,b}||_1
            c = dist.mul_(-_LOG2_E).exp2_()  # (k, t, L): exp(-dist)
            c.diagonal(dim1=1, dim2=2).zero_()  # the self-pairs i == j (column j = i0 + row)
            o[b0:b1, i0:i1] += c.sum(2)
            if i1 < n:
                o[b0:b1, i1:] += c[:, :, i1 - i0:].sum(1)  # the same pairs seen from the columns j >= i1
            closeness.append(c)
        ctx.save_for_backward(m)
        ctx.tiles, ctx.closeness, ctx.buf_size = tiles, closeness, buf.numel()
        return o

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # g (B, N) -> (C, B, N)
        (m,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the gradient must be differentiable
            return _closeness_grad_dense(m, g), None
        mc, n = m.contiguous(), m.shape[2]
        g = g.contiguous()
        grad = torch.zeros_like(mc)
        buf, w_buf = g.new_empty(ctx.buf_size), g.new_empty(ctx.buf_size // m.shape[0])
        for tile, c in zip(ctx.tiles, ctx.closeness):
            b0, b1, i0, i1 = tile
            w = torch.add(g[b0:b1, i0:i1, None], g[b0:b1, None, i0:], out=w_buf[: c.numel()].view(c.shape))
            w.mul_(c)  # (k, t, L): W_ij = (g_i + g_j) c_ij
            q = _strip_differences(mc, tile, buf).sign_().mul_(w)  # (C, k, t, L): W_ij sign(m_i - m_j)
            grad[:, b0:b1, i0:i1] -= q.sum(3)
            if i1 < n:
                grad[:, b0:b1, i1:] += q[..., i1 - i0:].sum(2)
        return grad, None


def _closeness_grad_dense(m: Tensor, g: Tensor) -> Tensor:
    """The backward of :class:`_PairwiseCloseness` as differentiable ops: (C, B, N), g (B, N)."""
    d = m.unsqueeze(3) - m.unsqueeze(2)  # (C, B, N, N): m_i - m_j
    c = torch.exp(-d.abs().sum(0))  # (B, N, N); the self-pairs need no mask: sign(d_ii) = 0
    w = (g.unsqueeze(2) + g.unsqueeze(1)) * c  # (B, N, N)
    return -(d.sign() * w).sum(3)


def minibatch_features(f: Tensor, T: Tensor, max_tile_elements: int | None = None) -> Tensor:
    """o(x_i)_b = sum_{j != i} exp(-||M_{i,b} - M_{j,b}||_1), M_i = f(x_i) T (Salimans et al. 2016, sec. 3.2).

    The self-pair (c_b(x_i, x_i) = exp(0) = 1 for every i) is left out, as in the reference code, so
    a batch of one gives o = 0 and the output only carries information about the *other* examples.

    Cost O(N^2 B C) time, as any exact computation, but each pair once and in cache-sized tiles,
    O(N^2 B) memory (see :class:`_PairwiseCloseness`). Half-precision inputs are computed in
    float32; the result has the dtype of ``f`` and ``T`` combined (float32 under autocast).

    Args:
        f: (N, A) features of one batch (real and fake batches are separate calls).
        T: (A, B, C) the tensor T of the paper.
        max_tile_elements: size of the work buffer of one tile (default: 2^20 on the CPU, 2^26 on
            accelerators); only speed and memory depend on it.

    Returns:
        (N, B) closeness of each example to the rest of its batch, per kernel b.
    """
    out_dtype = torch.promote_types(f.dtype, T.dtype)
    m = torch.einsum("na,abc->cbn", f, T)  # (C, B, N): M_{i,b,c}, one row of examples per (c, b)
    if m.shape[2] == 0:
        return m.new_zeros(0, m.shape[1], dtype=out_dtype)
    if max_tile_elements is None:
        max_tile_elements = MBD_CPU_TILE_ELEMENTS if m.device.type == "cpu" else MBD_ACCELERATOR_TILE_ELEMENTS
    o = _PairwiseCloseness.apply(m.to(torch.promote_types(m.dtype, torch.float32)), max_tile_elements)  # (B, N)
    return o.transpose(0, 1).to(out_dtype)  # (N, B)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination, Salimans et al. 2016, sec. 3.2: [f(x_i), o(x_i)] of size A + B.

    M_i = f(x_i) T with T in R^{A x B x C}; c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1);
    o(x_i)_b = sum_{j != i} c_b(x_i, x_j) (+ bias_b). D calls real and generated batches separately
    (see GAN.discriminate), so each batch is compared with itself only, as the paper prescribes.

    Like the reference code (``MinibatchLayer``), T is weight-normalized by default: each column
    T[:, b, c] has norm exp(log_scale[b, c]) (log_scale starts at 0), which keeps the distances
    independent of the scale of T and of the feature size A; and a learned bias (init 0) is added
    to o. The reference's data-dependent initialization (T rescaled per kernel so the mean
    nearest-neighbour L1 distance is 2, bias = -mean o on a first batch) is available as
    :meth:`init_from_data`; training does not call it (on the ring mixture it made coverage worse,
    see docs/improved_gan_results.md).

    Cost: O(N^2 B C) time and O(N^2 B) memory per call (see :func:`minibatch_features`); with the
    reference's B = 100, C = 5 on the reference MNIST D, a D step (forward + backward) on one CPU
    core costs 1.6x the same D without the layer at batch 128 and 2.8x at batch 512 (bench/mbd.py).

    Args:
        in_features: A, the size of f(x).
        kernels: B, the number of kernels (the reference uses 100).
        kernel_dim: C, the dimension of each kernel (the reference uses 5).
        weight_norm: normalize the columns of T as the reference code does (else T is used as is).
        bias: add a learned bias to o.

    Attributes:
        out_features: A + B.
        T: the effective (A, B, C) tensor T (after weight normalization).

    Raises:
        ValueError: on a non-positive size, or an input that is not (N, A).

    Example:
        >>> mbd = MinibatchDiscrimination(16, kernels=8, kernel_dim=3)
        >>> mbd(torch.randn(4, 16)).shape
        torch.Size([4, 24])
    """

    def __init__(
        self, in_features: int, kernels: int = 100, kernel_dim: int = 5, weight_norm: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        if min(in_features, kernels, kernel_dim) < 1:
            raise ValueError(
                f"minibatch discrimination needs in_features, kernels, kernel_dim >= 1, "
                f"got {in_features}, {kernels}, {kernel_dim}"
            )
        self.in_features, self.kernels, self.kernel_dim = in_features, kernels, kernel_dim
        self.out_features = in_features + kernels
        # Columns of norm ~1 either way, so both variants start at the same scale.
        self.weight = nn.Parameter(torch.randn(in_features, kernels, kernel_dim) / math.sqrt(in_features))
        self.log_scale = nn.Parameter(torch.zeros(kernels, kernel_dim)) if weight_norm else None
        self.bias = nn.Parameter(torch.zeros(kernels)) if bias else None

    @property
    def T(self) -> Tensor:
        """The (A, B, C) tensor of the paper: ``weight``, column-normalized when weight_norm is on."""
        if self.log_scale is None:
            return self.weight
        norms = self.weight.norm(dim=0).clamp_min(1e-12)  # (B, C): ||T[:, b, c]||_2
        return self.weight * (self.log_scale.exp() / norms).unsqueeze(0)  # (A, B, C)

    def forward(self, f: Tensor) -> Tensor:
        """(N, A) features -> (N, A + B) features with the minibatch features appended."""
        if f.dim() != 2 or f.shape[1] != self.in_features:
            raise ValueError(
                f"MinibatchDiscrimination expects features of shape (N, {self.in_features}), got {tuple(f.shape)}"
            )
        o = minibatch_features(f, self.T)  # (N, B)
        if self.bias is not None:
            o = o + self.bias
        return torch.cat([f, o], dim=1)  # (N, A + B)

    @torch.no_grad()
    def init_from_data(self, f: Tensor) -> Tensor:
        """Data-dependent initialization of the reference code (``MinibatchLayer``, ``init=True``).

        Each kernel b's slice T[:, b, :] is rescaled so that, on ``f``, the mean over examples of
        the L1 distance to the nearest other example is 2 (through ``log_scale`` with weight norm,
        else ``weight`` itself); then the bias is set to -mean_i o(x_i), so o starts centred on
        this batch. Call it once, before training, on features of real data; in DDP use the same
        batch on every rank (or broadcast the parameters) so the ranks start identical.

        Args:
            f: (N, A) features, N >= 2, with no kernel in which all examples coincide.

        Returns:
            (B,) the mean nearest-neighbour distances before rescaling (2 afterwards).

        Raises:
            ValueError: on fewer than 2 examples, a wrong shape, or a zero or non-finite mean
                nearest-neighbour distance.
        """
        if f.dim() != 2 or f.shape[1] != self.in_features or f.shape[0] < 2:
            raise ValueError(
                f"init_from_data needs features of shape (N >= 2, {self.in_features}), got {tuple(f.shape)}"
            )
        m = torch.einsum("na,abc->bnc", f, self.T).float()  # (B, N, C)
        dist = torch.cdist(m, m, p=1)  # (B, N, N); forward only, once
        dist.diagonal(dim1=1, dim2=2).fill_(math.inf)
        nearest = dist.amin(dim=2).mean(dim=1)  # (B,): mean over i of min_{j != i} ||M_{i,b} - M_{j,b}||_1
        if not bool(torch.isfinite(nearest).all() and (nearest > 0).all()):
            raise ValueError(
                "init_from_data needs examples that differ in every kernel (a mean nearest-neighbour "
                f"distance was {nearest.min().item()}); use a batch of distinct real examples"
            )
        scale = (2.0 / nearest).to(self.weight.dtype)  # (B,)
        if self.log_scale is not None:
            self.log_scale.add_(scale.log().unsqueeze(1))  # (B, C): every column of kernel b
        else:
            self.weight.mul_(scale.view(1, -1, 1))  # (A, B, C)
        if self.bias is not None:
            self.bias.copy_(-minibatch_features(f, self.T).mean(dim=0))
        return nearest

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, kernels={self.kernels}, kernel_dim={self.kernel_dim}, "
            f"weight_norm={self.log_scale is not None}, bias={self.bias is not None}"
        )


def add_minibatch_discrimination(
    discriminator: nn.Module, kernels: int = 100, kernel_dim: int = 5, num_outputs: int = 1
) -> nn.Module:
    """Replace D's head by [MinibatchDiscrimination -> Linear(feature_dim + kernels, num_outputs)].

    ``features(x)`` is untouched, so feature matching still sees D's penultimate features; the
    minibatch features only feed the logit. Any noise layer the old head held (improved_mnist's
    last GaussianNoise) is dropped with it.

    The new Linear's weights on o start at 0: o lies in [0, N - 1] and starts near N - 1 when
    features are close (a logit offset of several units at batch 64), so D starts from a plain
    linear head on f and learns how much to use o (its gradient, o * dL/dlogit, is not 0). The
    reference code instead shifts o by a bias set from a first batch (data-dependent init),
    which would differ between DDP ranks.

    Args:
        discriminator: a network with ``feature_dim`` and ``head`` (see gan_lightning.networks).
        kernels: B of :class:`MinibatchDiscrimination`.
        kernel_dim: C of :class:`MinibatchDiscrimination`.
        num_outputs: logits of the new head (1 for a GAN, K for the semi-supervised D).

    Returns:
        The same discriminator, modified in place.
    """
    a = int(discriminator.feature_dim)
    linear = nn.Linear(a + kernels, num_outputs)
    with torch.no_grad():
        linear.weight[:, a:] = 0.0  # the columns that read o
    # (N, A) -> (N, A + B) -> (N, num_outputs)
    discriminator.head = nn.Sequential(MinibatchDiscrimination(a, kernels, kernel_dim), linear)
    return discriminator
