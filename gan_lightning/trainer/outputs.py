"""Where scripts write: output folders and files checked before any work, results never overwritten silently.

Every script that writes a folder (train.py's run folders, the probe, the reproduction, local sweeps,
run comparison) or a file (the feature extractor's weights) calls :func:`check_out_dir` or
:func:`check_out_file` while parsing its flags, so a path that cannot be written (a file where a
folder should be, a name too long for the file system, no permission) ends in one line and exit 2
before minutes of training, and existing results are only replaced with ``--overwrite``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

from gan_lightning.errors import UsageError


def _limit(path: Path, name: str, fallback: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return fallback


def check_writable(path: str | Path, flag: str, kind: str = "folder") -> Path:
    """Raise UsageError unless ``path`` can be created (or already is) a ``kind`` ("folder" or "file").

    Checks, without creating anything: each existing part of the path is a folder (the last one
    may be the target itself), no name is longer than the file system allows, and the nearest
    existing folder is writable.

    Args:
        path: the folder or file a script will write.
        flag: the flag that named it, for the message (``--out_dir``).
        kind: what the script will write at ``path``.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag}: empty path; give a {kind}")
    # Lengths first: asking whether an over-long path exists is itself an OSError.
    base = Path(path.anchor or ".")
    name_max = _limit(base, "PC_NAME_MAX", 255)
    too_long = next((part for part in path.parts if len(os.fsencode(part)) > name_max), None)
    if too_long is not None:
        raise UsageError(f"{flag}: the name {too_long[:40]}... is {len(os.fsencode(too_long))} bytes long; "
                         f"this file system allows {name_max}")
    if len(os.fsencode(str(path.absolute()))) >= _limit(base, "PC_PATH_MAX", 4096):
        raise UsageError(f"{flag}: the path {str(path)[:40]}... is too long for this file system")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path:
        if kind == "folder" and not path.is_dir():
            raise UsageError(f"{flag}: {path} is a file, not a folder; give a folder (it is created if missing)")
        if kind == "file" and path.is_dir():
            raise UsageError(f"{flag}: {path} is a folder; give a file name")
    elif not existing.is_dir():
        raise UsageError(f"{flag}: cannot create {path}: {existing} is a file, not a folder")
    folder = path.parent if existing == path and kind == "file" else existing
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write in {folder} (permission denied)")
    return path


def check_out_dir(path: str | Path, flag: str = "--out_dir", results: Iterable[str] = (),
                  overwrite: bool = False) -> Path:
    """:func:`check_writable` for a folder, and refuse one that already holds ``results`` unless ``overwrite``.

    Args:
        path: the output folder.
        flag: the flag that named it.
        results: file names (globs) that a finished run of the script leaves in the folder.
        overwrite: the user's ``--overwrite``.

    Raises:
        UsageError: the folder cannot be written, or holds results and ``overwrite`` is False.
    """
    path = check_writable(path, flag, "folder")
    if path.is_dir() and not overwrite:
        found = sorted({p.name for pattern in results for p in path.glob(pattern)})
        if found:
            raise UsageError(f"{flag}: {path} already holds results ({', '.join(found[:3])}); "
                             f"choose another {flag} or pass --overwrite to replace them")
    return path


def check_out_file(path: str | Path, flag: str = "--out", overwrite: bool = False) -> Path:
    """:func:`check_writable` for a file, and refuse an existing one unless ``overwrite``."""
    path = check_writable(path, flag, "file")
    if path.exists() and not overwrite:
        raise UsageError(f"{flag}: {path} exists; choose another {flag} or pass --overwrite to replace it")
    return path


def say(message: str) -> None:
    """One line to stderr, from the main process only."""
    if int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
        print(message, file=sys.stderr, flush=True)
