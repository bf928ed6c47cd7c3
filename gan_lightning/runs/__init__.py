"""One training run end to end: the run folder, resume, the Trainer's fit, loggers, checkpoints,
output folders and the scripts' error handling.

May import anything in the package except ``experiments``.
"""
