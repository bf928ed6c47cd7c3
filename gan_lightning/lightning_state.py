"""What the package reads of Lightning's private state, in one place.

Lightning keeps a few numbers the package needs behind private attributes or inside its loops (the
batch count that ``Trainer(log_every_n_steps)`` uses, the step loggers get, the position in an
epoch), and a logger's experiment behind a property that creates it. Every read of them goes
through a function here, each with a comment naming the public API it stands in for, so a Lightning
release that moves one of them breaks one function, not a dozen call sites.

Duck-typed on purpose (no Lightning import): the modules, the callbacks and the runs all use it.

May import: nothing of the package.
"""

from __future__ import annotations

from typing import Any, Mapping


def attached_trainer(module: Any) -> Any | None:
    """The Trainer ``module`` (a LightningModule) is attached to, or None.

    Stands in for ``module.trainer``, which raises when no Trainer is attached (a module used on its own,
    in a test or a script).
    """
    return module._trainer


def batch_number(trainer: Any) -> int:
    """The current training batch's number, counted from 1 over all epochs of the run (a resumed run
    goes on counting): the count ``Trainer(log_every_n_steps)`` is checked against, the same from
    ``on_train_batch_start`` to ``on_train_batch_end``.

    Stands in for the ``batch_idx`` hooks get, which starts again at 0 every epoch (Lightning's own
    ThroughputMonitor reads the same ``total_batch_idx + 1``).
    """
    return trainer.fit_loop.epoch_loop.total_batch_idx + 1


def epoch_batch_number(trainer: Any) -> int:
    """Batches of the current epoch so far, the current one included (also at the epoch's end).

    Stands in for ``batch_idx + 1`` of the batch hooks, which ``on_train_epoch_end`` does not get.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.current.ready


def log_step(trainer: Any) -> int:
    """The step Lightning gives this batch's rows in the loggers (what ``LightningModule.log`` writes at).

    Stands in for the step of ``LightningModule.log``, for values written with ``logger.log_metrics``
    directly; Lightning's LearningRateMonitor reads the same. Not ``trainer.global_step``: with manual
    optimization that counts every optimizer step (D and G).
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def experiment_if_created(logger: Any) -> Any | None:
    """The logger's experiment (a W&B run, a CSV writer) if it was created, else None.

    Stands in for ``logger.experiment``, which creates one when there is none (a W&B run started just
    to be finished or summarized).
    """
    return logger._experiment


def set_experiment_cache(logger: Any, experiment: Any | None) -> None:
    """Make ``experiment`` the logger's experiment; None forgets it, so that the next
    ``logger.experiment`` creates a new one (a finished W&B run is not logged to again).

    Stands in for the cache of ``logger.experiment``; Lightning's loggers read it directly (CSVLogger's
    ``finalize`` saves only a writer that is there).
    """
    logger._experiment = experiment


def drop_wandb_init_setting(logger: Any, name: str) -> None:
    """Leave ``name`` out of the settings a WandbLogger passes to ``wandb.init`` (Lightning passes
    ``anonymous=None``, and W&B warns on every run that the setting has no effect).

    Stands in for a constructor argument WandbLogger does not have: it always sets ``anonymous``.
    """
    logger._wandb_init.pop(name, None)


def epochs_done(checkpoint: Mapping[str, Any]) -> int | None:
    """Epochs whose batches all ran before ``checkpoint`` (a dict from ``torch.load``) was written, or
    None when it does not say (written without the training loop's state).

    Stands in for the checkpoint's ``"epoch"``, which lags by one in a checkpoint written at an epoch end.
    """
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    return loop.get("epoch_progress", {}).get("current", {}).get("processed")
