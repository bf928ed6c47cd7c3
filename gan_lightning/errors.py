"""Errors that end a script with one line on stderr: usage errors (exit 2) and divergence (exit 3)."""


class UsageError(Exception):
    """A bad flag, an unknown name, a missing file: the message says what was wrong and what is right."""


class NotApplicable(UsageError):
    """A --remedy preset that does not apply to the --loss it is crossed with: a hole in a sweep's
    grid (sweep_local.py skips it), still refused with exit 2 when typed."""


class DataError(UsageError):
    """A data set that cannot be found or read."""


def is_count(value: object, minimum: int = 1) -> bool:
    """Whether ``value`` is an int (not a bool) >= ``minimum``: the check of every count argument."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or weight; the message names the network and the step."""
