"""What a UNet's output predicts, read back as clean latents or noise.

With ``x = a·x0 + b·ε`` (``a = √ᾱ``, ``b = √(1 - ᾱ)``) a model predicts one of:

* ``epsilon``: the noise ε (SD 1.x, SDXL, gouache-tiny);
* ``v_prediction``: the velocity ``v = a·ε - b·x0`` (SD 2.x 768-v);
* ``sample``: the clean latents x0 themselves.

``alpha_bar`` is ᾱ as a Python number or as a tensor that broadcasts against ``x`` (one value per
image: ``alphas_cumprod[t].view(-1, 1, 1, 1)``).

>>> predicted_x0(torch.zeros(1), torch.ones(1), 0.25, "epsilon")  # doctest: +SKIP
tensor([2.])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gouache.errors import InvalidArgument

if TYPE_CHECKING:
    import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

__all__ = ["PREDICTION_TYPES", "check_prediction_type", "predicted_noise", "predicted_x0", "shifted_output"]


def check_prediction_type(prediction_type: str) -> str:
    """``prediction_type`` if gouache can read it, else one :class:`InvalidArgument`."""
    if prediction_type not in PREDICTION_TYPES:
        raise InvalidArgument(f"prediction type {prediction_type!r} is not supported; a model predicts one of "
                              f"{', '.join(PREDICTION_TYPES)} (its scheduler config's `prediction_type`)")
    return prediction_type


def _roots(alpha_bar):
    """``(√ᾱ, √(1 - ᾱ))``, as tensors for a tensor, as floats for a number."""
    if isinstance(alpha_bar, (int, float)):
        return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


def predicted_x0(output: torch.Tensor, x: torch.Tensor, alpha_bar, prediction_type: str) -> torch.Tensor:
    """The clean latents the model's ``output`` at noisy latents ``x`` predicts."""
    a, b = _roots(alpha_bar)
    kind = check_prediction_type(prediction_type)
    if kind == "epsilon":
        return (x - b * output) / a
    if kind == "v_prediction":
        return a * x - b * output
    return output


def predicted_noise(output: torch.Tensor, x: torch.Tensor, alpha_bar, prediction_type: str) -> torch.Tensor:
    """The noise the model's ``output`` at noisy latents ``x`` predicts."""
    a, b = _roots(alpha_bar)
    kind = check_prediction_type(prediction_type)
    if kind == "epsilon":
        return output
    if kind == "v_prediction":
        return a * output + b * x
    return (x - a * output) / b


def shifted_output(output: torch.Tensor, shift: torch.Tensor, alpha_bar, prediction_type: str) -> torch.Tensor:
    """The output whose predicted clean latents are those of ``output`` plus ``shift`` (at the same
    ``x``): ``ε - shift·a/b``, ``v - shift/b``, or ``x0 + shift``."""
    a, b = _roots(alpha_bar)
    kind = check_prediction_type(prediction_type)
    if kind == "epsilon":
        return output - shift * a / b
    if kind == "v_prediction":
        return output - shift / b
    return output + shift
