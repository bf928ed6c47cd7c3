"""Errors that end a script with one line on stderr: usage errors (exit 2) and divergence (exit 3)."""


class UsageError(Exception):
    """A bad flag, an unknown name, a missing file: the message says what was wrong and what is right."""


class DataError(UsageError):
    """A data set that cannot be found or read."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or weight; the message names the network and the step."""
