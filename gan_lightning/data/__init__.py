"""The data sets (built-in and torchvision, image folders), the GAN data module with its resumable
shuffling, and the labeled/unlabeled split of the semi-supervised task.

May import: ``errors``, ``torch_utils``, ``images``, Lightning and torchvision.
"""
