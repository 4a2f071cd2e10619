"""Errors in what a user gave heatmapnet: a config, data, a checkpoint, a run directory.

Each is one line naming the file, record, field or key and what was expected. The command line
prints that line and exits with status 2 (``--debug`` shows the traceback instead); a run stopped
by SIGTERM or SIGINT (:class:`heatmapnet.stopping.StoppedBySignal`) exits with 128 + the signal's
number instead. Anything else is a bug and keeps its traceback. The classes that were
``ValueError``\\ s stay ones.
"""
from __future__ import annotations


class UserError(Exception):
    """Base of the errors the command line reports in one line: the input is wrong, not the program."""


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema, or names something that does not exist."""


class DataError(UserError, ValueError):
    """Annotations, images or a split that cannot be used as they are."""
