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


def check_number(name: str, value, low: float, high: float, meaning: str = "") -> float:
    """``value`` if it is a finite number from ``low`` to ``high`` (booleans are not numbers), else
    one :class:`InvalidArgument` that names the field and the range; ``meaning`` explains the ends,
    e.g. ``" (0 keeps the image, 1 replaces it)"``.

    >>> check_number("denoising_strength", 0.5, 0, 1)
    0.5
    """
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InvalidArgument(f"`{name}` must be a number from {low:g} to {high:g}{meaning}, got {value!r}")
    return value


def check_int(name: str, value, low: int, high: int) -> int:
    """``value`` if it is a whole number from ``low`` to ``high``, else one :class:`InvalidArgument`.

    >>> check_int("steps", 20, 1, 150)
    20
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"`{name}` must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"`{name}` must be between {low} and {high}, got {value}")
    return value
