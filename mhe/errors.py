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
