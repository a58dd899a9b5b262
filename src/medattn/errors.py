"""User errors: what went wrong with the input a user gave, as one clear line.

The command line prints any ``MedattnError`` as ``medattn <command>: error: <message>`` on stderr and
exits with code 2; every other exception is a bug and keeps its traceback. Each subclass also
derives from the built-in exception a caller would expect (``ValueError`` for bad values,
``KeyError`` for unknown names, ``FileNotFoundError`` for missing run files), so library code
can catch them either way.
"""
from __future__ import annotations


class MedattnError(Exception):
    """Base class of the errors a user can fix: bad config, data, names, run directories."""


class ConfigError(MedattnError, ValueError):
    """A config file or ``--set`` override is invalid (key, value, type or range)."""


class DataError(MedattnError, ValueError):
    """Bad input data: the message names the file, row or column at fault."""


class UnknownNameError(MedattnError, KeyError):
    """A name that is not registered (model, reader, loss, ablation grid, ...)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class RunError(MedattnError, FileNotFoundError):
    """A run directory that is missing, incomplete, or cannot do what was asked (e.g. --resume)."""


class OutputExistsError(MedattnError, FileExistsError):
    """An output (a run directory, a results file) that already exists and would be replaced."""


class CheckpointError(MedattnError, ValueError):
    """A checkpoint file that is damaged, truncated or does not fit the model."""
