"""Exception hierarchy of the RGPT library.

Callers (the ROS node, the CLI) catch these to turn bad inputs into actionable messages instead
of stack traces. Every message says what was wrong and what to do about it.
"""

from __future__ import annotations


class RGPTError(Exception):
    """Base class of every error raised on purpose by ``rgpt_model``."""


class InvalidImageError(RGPTError, ValueError):
    """The image is not an HxWx3 uint8 RGB array (or a PIL image)."""


class InvalidMaskError(RGPTError, ValueError):
    """Masks have the wrong shape, dtype or size for the image."""


class EmptyMaskError(InvalidMaskError):
    """A selected region mask has no foreground pixel, so it has no feature."""


class RegionCountMismatchError(RGPTError, ValueError):
    """Region placeholders in a prompt do not match the masks supplied with it."""


class UnknownRegionError(RGPTError, KeyError):
    """A requested region id is not present in the mask input."""

    def __str__(self) -> str:  # KeyError would otherwise print the message with quotes
        return str(self.args[0]) if self.args else ""


class InvalidQueryError(RGPTError, ValueError):
    """A referring expression / question / task request is empty, malformed or over a bound."""


class ModelLoadError(RGPTError, OSError):
    """A model directory is missing, incomplete or corrupt."""


class QueryCancelledError(RGPTError):
    """The caller's ``should_stop`` asked to stop a running task between decoding steps."""


class DistributedTrainingError(RGPTError, RuntimeError):
    """A rank of a distributed training run failed; every rank raises it so the job stops
    together instead of waiting forever in the next collective."""
