"""The training config: flags (the one flat TrainConfig), parsing (CLI and YAML), resolving ``auto``
values, validation.

The flow: :func:`parse_args` (flags and YAML into a TrainConfig, checked) -> the run folder ->
:func:`resolve` (every ``auto`` replaced by its value: a frozen :class:`ResolvedConfig`) -> the builders
in ``gan_lightning.build``, which take only that.

May import: ``errors``, and, inside functions, the registries it checks names against (``data``,
``core``, ``networks``, ``metrics``). Nothing here imports ``build``, ``modules``, ``callbacks``,
``runs`` or ``experiments``.
"""

from gan_lightning.config.flags import (ACCELERATORS, FIELD_TYPES, LOGGERS, LOSS_ALIASES, PRECISIONS, REMEDIES, TASKS,
                                        TrainConfig, flags_markdown)
from gan_lightning.config.parse import Given, config_from_dict, parse_args
from gan_lightning.config.resolve import AUTO, ResolvedConfig, noise_enabled, resolve, run_g_steps
from gan_lightning.config.validate import SEED_MAX, SIZE_LIMITS, notices, validate

__all__ = ["ACCELERATORS", "AUTO", "FIELD_TYPES", "Given", "LOGGERS", "PRECISIONS", "LOSS_ALIASES", "REMEDIES",
           "ResolvedConfig", "SEED_MAX", "SIZE_LIMITS", "TASKS", "TrainConfig", "config_from_dict", "flags_markdown",
           "noise_enabled", "notices", "parse_args", "resolve", "run_g_steps", "validate"]
