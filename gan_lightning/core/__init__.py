"""The GAN objectives as plain torch: losses of logits, what G minimizes, penalties, instance noise.

May import: torch, ``gan_lightning.errors``, ``gan_lightning.torch_utils``. No Lightning, nothing
else of this package (tests/test_layout.py checks it).
"""
