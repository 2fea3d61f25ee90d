"""Exceptions raised by psrq. Every message names the file, column, row or item at fault."""

from __future__ import annotations


class PsrqError(Exception):
    """Base class for all errors psrq raises on purpose."""


class InputError(PsrqError, ValueError):
    """Bad user input: wrong shape, NaN rows, missing column, duplicate IDs, ..."""


class NotFittedError(PsrqError, AttributeError):
    """A model was used before `fit` (or `load`)."""


class ArtifactError(PsrqError):
    """A model directory or artifact is missing, corrupted, or from an incompatible version."""


class TrainingError(PsrqError, RuntimeError):
    """Training went wrong in a way that must stop the run (e.g. a NaN loss)."""


class ConfigError(PsrqError, ValueError):
    """A configuration file or option is invalid; the message names the key and what is allowed."""


class OutputError(PsrqError):
    """An output path psrq must not (or cannot) write: it holds something psrq did not write,
    lies under a file, or is in a read-only place. Raised before any work starts."""


class LockedError(PsrqError):
    """Another psrq process is writing the same output; the message names its PID and the path."""
