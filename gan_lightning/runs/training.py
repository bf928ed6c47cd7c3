"""What scripts/train.py does: choose the run folder, resolve the config once, build, fit."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Collection, Sequence

from gan_lightning.build import build_trainer
from gan_lightning.config import ResolvedConfig, TrainConfig, config_from_dict, parse_args, resolve, validate
from gan_lightning.config.resolve import AUTO_STRATEGIES
from gan_lightning.config.flags import shape_keys
from gan_lightning.errors import DivergenceError, NotApplicable, UsageError
from gan_lightning.lightning_state import epochs_done
from gan_lightning.trainer.outputs import say

RUN_DIR_ENV = "GAN_LIGHTNING_RUN_DIR"  # set by rank 0 so processes started by DDP use the same folder


@dataclass
class Run:
    cfg: ResolvedConfig
    run_dir: Path
    ckpt_path: Path | None
    branched_from: Path | None = None  # a checkpoint of another run folder this run starts from
    preempted: bool = False  # stopped by SIGTERM (last.ckpt saved), not finished


def default_run_name(cfg: TrainConfig) -> str:
    """``<dataset>-<arch>-<loss or ssl>-<time or SLURM job id>`` of a resolved config."""
    stamp = os.environ.get("SLURM_JOB_ID") or time.strftime("%Y%m%d-%H%M%S")
    what = "ssl" if cfg.task == "semi_supervised" else cfg.loss
    return f"{cfg.dataset}-{cfg.arch}-{what}-{stamp}"


def resolve_run(cfg: TrainConfig, given: Collection[str]) -> Run:
    """Pick the run folder and, for --resume, merge the checkpoint's config under the given flags;
    the returned run holds the resolved config (:func:`gan_lightning.config.resolve`), the one the
    run uses from here on.

    A resumed run goes where --out_dir and --run_name say, and they default to the checkpoint's
    own run folder: ``--resume runs/A/checkpoints/last.ckpt`` continues A, adding ``--run_name B``
    starts run B from A's checkpoint (B records where it came from, A is left untouched).

    Raises:
        UsageError: a missing or foreign checkpoint, changed architecture flags, an output folder
            that cannot be written, or a run folder that already holds checkpoints (never
            overwritten; resume it instead).
    """
    from gan_lightning.runs.folder import find_last
    from gan_lightning.trainer.checkpoints import CHECKPOINT_KEY, read_checkpoint
    from gan_lightning.trainer.outputs import check_out_dir

    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:  # a process started by DDP: rank 0 resolved the run already
        run_dir = Path(inherited)
    if cfg.resume:
        ckpt_path = find_last(cfg.out_dir, cfg.run_name) if cfg.resume == "last" else Path(cfg.resume)
        stored = read_checkpoint(ckpt_path)[CHECKPOINT_KEY].get("config", {})
        # The strategy auto chose fits the devices of the session that chose it: a resume chooses again.
        kept = {k: v for k, v in stored.items() if k != "strategy" or v not in AUTO_STRATEGIES}
        merged = {**kept, **{k: getattr(cfg, k) for k in given}}
        cfg = resolve(config_from_dict(merged))
        # Compare resolved values: "--arch auto" resumes a checkpoint that stored what auto meant.
        was = resolve(config_from_dict(stored)) if stored else None
        implied = getattr(given, "implied", {})  # keys a --remedy preset or loss alias set: name that flag
        for key in shape_keys(cfg) if was is not None else ():
            if key in given and key in stored and getattr(cfg, key) != getattr(was, key):
                typed, shown = implied.get(key, f"--{key}"), f"--{key}={getattr(cfg, key)}"
                shown = f"{typed} ({shown})" if key in implied else shown
                raise UsageError(
                    f"{shown} differs from the checkpoint's {stored[key]!r}; "
                    f"omit {typed} to resume {ckpt_path}"
                )
        validate(cfg, given)
        own = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else None
        out_dir = Path(cfg.out_dir) if "out_dir" in given or own is None else own.parent
        name = cfg.run_name if "run_name" in given else own.name if own else ""
        if not inherited:
            run_dir = out_dir / (name or default_run_name(cfg))
        cfg = replace(cfg, out_dir=str(run_dir.parent), run_name=run_dir.name)
        branch = own is None or run_dir.resolve() != own.resolve()
        if branch and not inherited:
            check_out_dir(run_dir, "--run_name")  # the whole path: a file in the way, an over-long name
            if any((run_dir / "checkpoints").glob("*.ckpt")):
                raise UsageError(
                    f"--resume {ckpt_path} into {run_dir}: that run folder already holds checkpoints; "
                    f"choose another --run_name (or resume {run_dir} itself with --resume last "
                    f"--run_name {run_dir.name})"
                )
        return Run(cfg, run_dir, ckpt_path, branched_from=ckpt_path if branch else None)

    cfg = resolve(cfg)
    if inherited:
        return Run(replace(cfg, run_name=run_dir.name), run_dir, None)
    check_out_dir(cfg.out_dir)
    if cfg.run_name:
        run_dir = Path(cfg.out_dir) / cfg.run_name
        if any((run_dir / "checkpoints").glob("*.ckpt")):
            raise UsageError(
                f"run folder {run_dir} already holds checkpoints; pass --resume last to continue it "
                f"or choose another --run_name"
            )
    else:
        name = default_run_name(cfg)
        run_dir, n = Path(cfg.out_dir) / name, 1
        while run_dir.exists():
            n += 1
            run_dir = Path(cfg.out_dir) / f"{name}-{n}"
        cfg = replace(cfg, run_name=run_dir.name)
    check_out_dir(run_dir, "--run_name")
    return Run(cfg, run_dir, None)


def quiet_lightning() -> None:
    """Drop Lightning's console lines that say nothing about this run (an advert, a misleading stop reason,
    accelerators the machine does not have).

    ``Trainer.fit stopped: max_epochs=... reached`` is printed also when ``--max_steps`` stopped the
    run; ``train`` says itself why it stopped.
    """
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # torch/lightning version chatter
    # Few batches per epoch (small data sets) is normal here; metrics are still logged every epoch end.
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(getattr(f, "gan_lightning", False) for f in rank_zero.filters):
        def drop(record: logging.LogRecord) -> bool:
            text = record.getMessage()
            # "GPU available: False, used: False", "TPU available: False, ...": nothing to see on a laptop
            nothing_there = "available: False" in text
            return "litlogger" not in text and "`Trainer.fit` stopped" not in text and not nothing_there
        drop.gan_lightning = True  # type: ignore[attr-defined]
        rank_zero.addFilter(drop)


def finished(cfg: TrainConfig, ckpt: dict[str, Any]) -> str:
    """Why a checkpoint's run has nothing left to train under ``cfg`` ("" if it has)."""
    # "processed" counts epochs whose batches all ran; "completed" lags by one in an epoch-end checkpoint.
    epochs = epochs_done(ckpt) or 0
    g_steps = int(ckpt["state_dict"].get("g_steps", 0))
    if cfg.max_steps > 0 and g_steps >= cfg.max_steps:
        return f"it made {g_steps} G steps, --max_steps is {cfg.max_steps}"
    if cfg.max_epochs != -1 and epochs >= cfg.max_epochs:
        return f"it trained {epochs} epochs, --max_epochs is {cfg.max_epochs}"
    return ""


def train(cfg: TrainConfig, given: Collection[str] | None = None) -> Run:
    """Train one run end to end; returns where it wrote its outputs.

    Raises:
        UsageError: bad flags, data, checkpoint or output folder, all found before anything is written.
        KeyboardInterrupt: Ctrl-C, with how to resume as its message.
    """
    import shutil

    import lightning as L
    import yaml
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from gan_lightning.build import build_datamodule, build_module
    from gan_lightning.runs.folder import CONFIG, last_checkpoint, load
    from gan_lightning.trainer.checkpoints import optimizer_changes, remove_stale_temporaries
    from gan_lightning.trainer.loggers import finish_wandb

    from gan_lightning.config.validate import notices

    quiet_lightning()
    given = given if given is not None else set()
    run = resolve_run(cfg, given)
    cfg = run.cfg
    dm = build_datamodule(cfg)
    dm.check()
    fitted = None  # the checkpoint's weights made to fit this config, where they needed it (fit_state_dict)
    if run.ckpt_path:  # refuse weights that do not fit before the Trainer prints or anything is written
        loaded = load(run.ckpt_path, cfg)
        ckpt, fitted = loaded.checkpoint, loaded.module
        changes = loaded.notes + optimizer_changes(loaded.stored, cfg.to_dict())
        if set(fitted.state_dict()) == set(ckpt["state_dict"]):
            fitted = None  # the file fits as it is: Lightning loads it strictly
        done = finished(cfg, ckpt)
        origin = {"resumed_from": str(run.ckpt_path.resolve()), "g_steps": int(ckpt["state_dict"].get("g_steps", 0))}
        del ckpt, loaded
        if done:
            say(f"nothing to train: {run.ckpt_path} is finished ({done}); raise --max_epochs or --max_steps "
                f"to train on")
            return run
        for line in changes:
            say(line)
    for line in notices(cfg, given):
        say(line)
    created = not run.run_dir.exists()  # before the loggers, which may make it
    trainer = build_trainer(cfg, run.run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, dm.data_shape)
    if fitted is not None:
        # What the checkpoint lacks (an average of G, a penalty's counters) starts as fit_state_dict set it;
        # Lightning then loads the file's entries over it, leaving those out (and ignoring ones dropped).
        module.load_state_dict(fitted.state_dict())
        module.strict_loading = False
        del fitted
    inherited = RUN_DIR_ENV in os.environ
    if trainer.global_rank == 0 and not inherited:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(run.run_dir / "checkpoints"):
            say(f"removed {stale}, left by a process killed while writing a checkpoint")
        (run.run_dir / CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if run.branched_from:
            (run.run_dir / "origin.yaml").write_text(yaml.safe_dump(origin, sort_keys=False))
        say(f"run folder: {run.run_dir}" + (f" (resuming {run.ckpt_path})" if run.ckpt_path else ""))
    # Processes that DDP starts during fit inherit the environment: they join this run folder.
    os.environ[RUN_DIR_ENV] = str(run.run_dir)
    last = last_checkpoint(run.run_dir)
    failed, stopped = True, ""  # until fit returns: the W&B run is closed as failed
    closing: list[str] = []  # printed after the W&B run is finished, so W&B's own footer comes before them
    started = time.monotonic()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(run.ckpt_path) if run.ckpt_path else None)
        failed = False
    except SIGTERMException:
        failed = False
        run.preempted = True  # LastCheckpoint saved last.ckpt and said so; a clean exit lets the job be requeued
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Lightning turns Ctrl-C into exit(1) after its own shutdown (and ignores SIGINT from then on:
        # give it back to Python); exit 130 with how to go on.
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)
        hint = (f"continue from the last checkpoint with --resume last --run_name {run.run_dir.name} "
                f"--out_dir {run.run_dir.parent}" if last.is_file() else "no checkpoint was written yet")
        raise KeyboardInterrupt(hint) from None
    except DivergenceError as e:
        stopped = str(e)  # diagnosed below: the run's rows up to the last log step
        raise
    except UsageError:
        finish_wandb(trainer.loggers, exit_code=1)  # before its folder may go
        if created and trainer.global_rank == 0 and not last.exists():
            shutil.rmtree(run.run_dir, ignore_errors=True)  # a folder holding only config.yaml helps nobody
        raise
    finally:
        if not inherited:
            del os.environ[RUN_DIR_ENV]
        if trainer.global_rank == 0 and (not failed or stopped):
            closing.append(outcome_line(trainer, module, time.monotonic() - started))
            diagnose(run.run_dir, trainer.loggers, stopped, say=closing.append)
        finish_wandb(trainer.loggers, exit_code=int(failed))
        for line in filter(None, closing):
            say(line)
    if cfg.max_steps > 0 and int(module.g_steps) >= cfg.max_steps and not run.preempted:
        say(f"stopped at G step {int(module.g_steps)} (--max_steps)")
    return run


def outcome_line(trainer: Any, module: Any, seconds: float) -> str:
    """``result: fid/lenet_5k 9.73 (best 9.73 at G step 1240); 1240 G steps in 11.8 min``: the run's
    headline metric (MetricsCallback.summary; the test error of the semi-supervised task) and its length."""
    from gan_lightning.callbacks import MetricsCallback

    parts = [cb.summary() for cb in trainer.callbacks if isinstance(cb, MetricsCallback)]
    error = trainer.callback_metrics.get("ssl/test_error")
    if error is not None:
        parts.append(f"ssl/test_error {float(error):.4f}")
    took = f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"
    steps = f"{module.g_step_count} G steps in {took}"
    shown = ", ".join(p for p in parts if p)
    return f"result: {shown}; {steps}" if shown else f"result: no quality metric measured; {steps}"


def diagnose(run_dir: Path, loggers: Sequence[Any], stopped: str = "", say: Any = say) -> None:
    """The stability verdict at the end of a run (runs/diagnosis.py); a failure to write it is one
    line, never the end of a run that trained."""
    from gan_lightning.runs.diagnosis import after_training

    try:
        after_training(run_dir, loggers, stopped, say=say)
    except Exception as e:  # e.g. a full disk: the checkpoint and metrics are what matter
        say(f"diagnosis not written: {' '.join(str(e).split())[:200]}")


SWEEP_ENV = "WANDB_SWEEP_ID"  # set by `wandb agent` for the runs it starts


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/train.py``: parse flags, print the resolved config for --dry_run, else train.

    A ``--remedy`` that does not apply to the ``--loss`` (a hole in a sweep's grid) is refused like
    any bad input, except in a run started by ``wandb agent``: there it is skipped with one line and
    exit 0, so the hole does not count as a failed run (3 of them in a minute stop the agent).
    """
    try:
        cfg, given = parse_args(argv)
    except NotApplicable as e:
        if not os.environ.get(SWEEP_ENV):
            raise
        print(f"skipped, nothing to run: {e}", file=sys.stderr)
        return 0
    if cfg.dry_run:
        import yaml

        from gan_lightning.config.validate import notices

        resolved = resolve(cfg)
        for line in notices(resolved, given):
            print(line, file=sys.stderr)
        print(yaml.safe_dump(resolved.to_dict(), sort_keys=False), end="")
        return 0
    train(cfg, given)
    return 0
