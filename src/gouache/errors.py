"""The small error hierarchy gouache raises.

Every error a user can cause derives from :class:`GouacheError`. The CLI turns these into one
line on stderr and exit code 1 (``gouache.cli.main``); anything else is a bug and keeps its
traceback.
"""


class GouacheError(Exception):
    """Base class: something the user asked for cannot be done, with a message that says why."""


class InvalidArgument(GouacheError, ValueError):
    """An argument is out of range or malformed (size not a multiple of 8, zero steps, ...)."""


class UnknownName(GouacheError, KeyError):
    """A name (sampler, model, scheduler) that no registry knows; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(GouacheError):
    """A checkpoint or model folder that cannot be read: missing, corrupt, truncated, unknown layout."""


class OutputError(GouacheError):
    """An output location that cannot be written, or a file that would be overwritten."""
