"""Flags and YAML files into a TrainConfig: type conversion, one-line errors, loss aliases, remedy presets."""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from gan_lightning.config.flags import FIELD_TYPES, LOSS_ALIASES, REMEDIES, TrainConfig, flag_text
from gan_lightning.errors import UsageError


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"invalid bool value: {value!r} (use true or false)")


def _convert(key: str, value: Any) -> Any:
    """Check and convert one value to the field's type; raise UsageError naming the key.

    Values come from the command line (strings) or a YAML file (any YAML type): lists, mappings,
    dates and the like are refused with the type YAML read, floats must be finite.
    """
    kind = FIELD_TYPES[key]
    if value is not None and not isinstance(value, (str, int, float)):
        what = type(value).__name__
        hint = " (YAML reads an unquoted date as a date: quote it)" if what in ("date", "datetime") else ""
        raise UsageError(f"--{key}: expected {kind.__name__}, got a {what} {value!r}{hint}")
    try:
        if kind is bool:
            return _to_bool(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise UsageError(f"--{key}: must be a finite number, got {value!r}")
            return number
        return "" if value is None else str(value)
    except (ValueError, TypeError, OverflowError):
        raise UsageError(f"--{key}: expected {kind.__name__}, got {value!r}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        if message.startswith("unrecognized arguments"):
            words = message.split(":", 1)[1].split()
            if not words or not words[0].startswith("-"):  # a stray value, e.g. after a flag that takes none
                raise UsageError(f"unexpected argument {words[0] if words else ''!r}: a value without a flag "
                                 f"(booleans take --flag=true)")
            flag = words[0].split("=")[0].lstrip("-")
            close = difflib.get_close_matches(flag, FIELD_TYPES, n=1)
            hint = f"; did you mean --{close[0]}?" if close else "; see --help for the flags"
            raise UsageError(f"unknown flag --{flag}{hint}")
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train.py",
        description="Train a GAN. Flags are the fields of gan_lightning.config.TrainConfig.",
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,  # only flags actually given end up in the namespace
    )
    # Accept "--lr_g -1e-4": argparse only knows plain negative numbers like -1 or -0.5.
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
    for f in fields(TrainConfig):
        kind = FIELD_TYPES[f.name]
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        if kind is bool:
            p.add_argument(f"--{f.name}", nargs="?", const="true", metavar="BOOL", help=help_text)
        else:
            p.add_argument(f"--{f.name}", metavar=kind.__name__.upper(), help=help_text)
    return p


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config: no such file {path}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"--config: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--config: cannot read {path} as text ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config: {path} must hold a mapping of flag names to values")
    unknown = sorted((k for k in data if k not in FIELD_TYPES), key=str)
    if unknown:
        raise UsageError(f"--config: unknown key {unknown[0]!r} in {path}; valid keys are the flags of --help")
    return data


class Given(set):
    """The keys a user set: given in YAML or on the command line, or set for them by a loss alias or a
    ``--remedy`` preset. ``implied`` maps each key of the latter kind to the flag the user typed
    (``{"r1_weight": "--remedy r1"}``), so that a message can name that flag (:meth:`flag`).

    A set, so ``key in given`` and ``given == {...}`` work as before.
    """

    def __init__(self, keys: Iterable[str] = (), implied: Mapping[str, str] | None = None) -> None:
        super().__init__(keys)
        self.implied: dict[str, str] = dict(implied or {})

    def flag(self, key: str, value: Any = None) -> str:
        """``key`` as the user set it, for a message: ``--remedy r1 (--r1_weight 10)`` where a preset or
        alias set it, else ``--r1_weight``."""
        return flag_text(key, value, self.implied)


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, Given]:
    """Parse flags (and a --config YAML) into a validated TrainConfig.

    Precedence: defaults < the settings of a loss alias or --remedy preset < YAML file < command line.

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The config as given (``auto`` values kept; validated as :func:`resolve` works them out) and the
        keys the user gave (YAML or command line) or that a loss alias or remedy preset set (a
        :class:`Given`, which knows the flag that set each of the latter).

    Raises:
        UsageError: unknown flag or key, wrong type or invalid value.
    """
    from gan_lightning.config.resolve import resolve
    from gan_lightning.config.validate import validate

    cli = vars(_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))
    given = dict(_load_yaml(cli["config"])) if cli.get("config") else {}
    given.update(cli)
    implied: dict[str, str] = {}  # key -> the alias or preset flag that set it
    if given.get("loss") in LOSS_ALIASES:
        base, settings = LOSS_ALIASES[given["loss"]]
        implied.update({k: f"--loss {given['loss']}" for k in settings if k not in given})
        given = {**settings, **given, "loss": base}
    if given.get("remedy") in REMEDIES:
        implied.update({k: f"--remedy {given['remedy']}" for k in REMEDIES[given["remedy"]] if k not in given})
        given = {**REMEDIES[given["remedy"]], **given}
    values = {k: _convert(k, v) for k, v in given.items()}
    cfg = TrainConfig(**values)
    keys = Given(values, implied)
    validate(resolve(cfg), keys)
    return cfg, keys


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from a stored dict (a checkpoint's), ignoring keys this version lacks."""
    known = {k: _convert(k, v) for k, v in values.items() if k in FIELD_TYPES}
    return TrainConfig(**known)


