"""What the toolkit measures about the two players: G's gradient under both costs, D's accuracy,
the largest singular values of D's weights (``spectral``), and the frozen-generator probe of
Arjovsky & Bottou 2017 (Figs. 1-3).

May import: torch, ``core``, ``layers``, ``errors``, ``torch_utils``. No Lightning; the callbacks
that run these during training are in ``callbacks``, and the probe study that trains generators
is in ``experiments``.
"""
