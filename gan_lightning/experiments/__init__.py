"""Studies built on training runs: W&B sweeps and their local runner, run comparison, the paper
reproductions and their reports, the probe study, the supervised baseline; and what the other
scripts run: a checkpoint's evaluation, the training of the LeNet feature extractor.

May import anything in the package; nothing else in the package imports ``experiments``.
"""
