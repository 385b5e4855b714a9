"""Errors a user can act on.

Every error raised on purpose by ffnmem is an :class:`FfnmemError`: its message is one line that
says what is wrong and what to do. The CLI prints that line (no traceback) and exits non-zero.
"""

from __future__ import annotations


class FfnmemError(Exception):
    """A problem with the user's input or environment, phrased as one actionable line."""

    exit_code = 2


class ModelNotFound(FfnmemError):
    """A model spec that names nothing ffnmem can load offline."""


class MissingPackage(FfnmemError):
    """An optional package that a feature needs is not installed."""


class CorruptWeights(FfnmemError):
    """A weight file that cannot be read (truncated, not the claimed format)."""


class BadInput(FfnmemError):
    """Input data (text, prompts, layers, hook names, files) that cannot be used as given."""


class NonFiniteActivation(FfnmemError):
    """NaN or inf found in an activation; names the hook (and so the layer)."""


class CacheNotWritable(FfnmemError):
    """The cache folder cannot be created or written."""
