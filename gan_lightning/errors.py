"""Errors a user can cause. Scripts turn them into one line on stderr and exit code 2."""


class UsageError(Exception):
    """A bad flag, an unknown name, a missing file: the message says what was wrong and what is right."""


class DataError(UsageError):
    """A data set that cannot be found or read."""
