"""One training run end to end, above the builders: the run folder and its checkpoint (``folder``),
resume and the Trainer's fit (``training``), the end-of-run diagnosis, the scripts' parser and error
handling (``cli``). The Trainer's parts (loggers, checkpoint IO, ddp_gan, console output) are one floor
down, in ``trainer``.

May import anything in the package except ``experiments``.
"""
