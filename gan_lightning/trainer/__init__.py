"""The parts a run's Lightning Trainer is built with: checkpoint IO and the checkpoint's own records
(``checkpoints``), the ``ddp_gan`` strategy (``ddp``), the loggers (``loggers``), and the console and
output-folder helpers every layer above uses (``outputs``).

Below ``build`` (which assembles them) and ``runs`` (which trains with them).

May import: ``config``, ``metrics``, ``diagnostics``, ``modules`` and ``lightning_state``; never ``build``
or ``runs``.
"""
