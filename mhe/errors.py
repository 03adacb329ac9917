"""The errors a user can fix from the message alone.

Every one of them derives from :class:`UserError`; the ``mhe`` command prints such an error as one line
(``mhe <command>: error: ...``) and exits with status 2, without a traceback (``mhe --debug`` shows it).
Each also derives from the built-in type code would expect (``ValueError``, ``RuntimeError``), so
``except ValueError`` around library calls keeps working. This module imports nothing heavy, so the CLI
can name these types before torch is loaded.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can correct: the message says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A configuration file or override is malformed: unknown key, wrong type or bad value."""


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint is unreadable, or does not fit the model or config it is being loaded into."""


class DataFileError(UserError, ValueError):
    """A dataset file is missing a field, damaged or in an unexpected format (the message names the file)."""


class BodyModelFileError(UserError, ValueError):
    """A body-model file is unreadable, or its content does not match what was asked for."""


class DistributedSetupError(UserError, RuntimeError):
    """The multi-process start-up is misconfigured (rendezvous variables missing or malformed) or the
    other processes never joined."""


class OutputPathError(UserError, ValueError):
    """An output path that cannot be written safely: empty, a folder, a device or link, under a file."""


def check_output_path(path: str, *, overwrite: bool = False, option: str = "the output",
                      suffixes: tuple[str, ...] = (), overwrite_hint: str = "--overwrite") -> None:
    """Refuse an output file that would clobber something, before any work starts.

    ``path`` must be a non-empty file name whose parent folders are folders (or do not exist yet); an
    existing regular file is replaced only with ``overwrite``; anything else that exists there (a folder,
    a link, a device such as ``/dev/stdout``, a pipe) is never replaced. ``option`` names the argument
    in the message (``"--json"``); ``suffixes`` (``(".ply", ".obj")``) are the accepted endings;
    ``overwrite_hint`` says how to allow replacing (``"overwrite=True"`` for library calls).
    Raises :class:`OutputPathError` or ``FileExistsError`` (both printed by ``mhe`` as one line).
    """
    import os
    import stat
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{option} must be a file path (str or os.PathLike), got {type(path).__name__}")
    text = os.fspath(path)
    if not str(text).strip():
        raise OutputPathError(f"{option} is empty: give a file name" + (" (or - for standard output)"
                                                                        if option == "--json" else ""))
    p = Path(text)
    if suffixes and p.suffix.lower() not in suffixes:
        raise OutputPathError(f"{option} {text}: give a file ending in {', '.join(suffixes)}")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputPathError(f"{option} {text}: {parent} is a file, not a folder; choose a path in a folder")
        if parent.is_dir():
            break
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"{option} {text} is a folder; give a file name in it, e.g. "
                              f"{p / ('out' + (suffixes[0] if suffixes else '.json'))}")
    if stat.S_ISLNK(mode):
        raise OutputPathError(f"{option} {text} is a link (to {os.readlink(p)}); it is not replaced: give the "
                              "path of a regular file" + (", or - for standard output" if option == "--json" else ""))
    if not stat.S_ISREG(mode):
        raise OutputPathError(f"{option} {text} exists and is not a regular file (a device, pipe or socket); it "
                              "is never replaced: give a file name" + (", or - for standard output"
                                                                      if option == "--json" else ""))
    if not overwrite:
        raise FileExistsError(f"{option} {text} already exists; pass {overwrite_hint} to replace it, or choose "
                              "another file name")
