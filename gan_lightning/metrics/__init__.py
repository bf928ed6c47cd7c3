"""Metrics of G's samples: the logged key names, FID/KID/IS/precision-recall through torch-fidelity,
the feature extractors (Inception, LeNet-MNIST) and mode coverage of the 2-D mixtures.

May import: ``data``, ``images``, ``errors``, ``torch_utils`` and the metric libraries.
"""
