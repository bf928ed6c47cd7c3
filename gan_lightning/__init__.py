"""gan_lightning: train GANs with PyTorch Lightning and measure why they are unstable.

Importing the package is cheap: submodules are imported where they are used.
"""

__version__ = "0.1.0"
