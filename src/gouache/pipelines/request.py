"""What a generation asks for, validated where it enters, and what it gives back."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from PIL import Image

from gouache.errors import InvalidArgument

MAX_SEED = 2**32 - 1  # AUTOMATIC1111's seeds are 32-bit unsigned


@dataclass
class GenerationRequest:
    """A text-to-image request; field names follow AUTOMATIC1111's API where one exists.

    >>> GenerationRequest("a red circle on a blue background", steps=20, seed=42).validate()
    """

    prompt: str
    negative_prompt: str = ""
    model: str | None = None  # name in $GOUACHE_HOME/checkpoints, a path, or None for gouache-tiny
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "DPM++ 2M"
    scheduler: str = "Automatic"  # A1111 1.9's "Schedule type"
    seed: int = -1  # -1 picks one at random and records it
    width: int | None = None  # None: the model's native size
    height: int | None = None
    batch_size: int = 1
    n_iter: int = 1
    clip_skip: int = 1  # A1111's "Clip skip": 2 uses the text encoder's penultimate layer
    emphasis: str = "Original"  # A1111's "Emphasis": Original, No norm, Ignore, None
    old_prompt_editing: bool = False  # A1111 < 1.6's rule for [a:b:N]: N < 1 fraction, else step

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` naming the field, its value and the fix."""
        from gouache.sampling.samplers import resolve

        if not isinstance(self.prompt, str):
            raise InvalidArgument(f"`prompt` must be text, got {type(self.prompt).__name__}")
        if not isinstance(self.negative_prompt, str):
            raise InvalidArgument(f"`negative_prompt` must be text, got {type(self.negative_prompt).__name__}")
        _int_range("steps", self.steps, 1, 1000)
        if not isinstance(self.cfg_scale, (int, float)) or not math.isfinite(self.cfg_scale) or not 0 <= self.cfg_scale <= 100:
            raise InvalidArgument(f"`cfg_scale` must be a number between 0 and 100, got {self.cfg_scale!r}")
        _int_range("seed", self.seed, -1, MAX_SEED)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is None:
                continue
            _int_range(name, value, 64, 4096)
            if value % 8:
                raise InvalidArgument(
                    f"`{name}` must be a multiple of 8, got {value} (try {value // 8 * 8} or {value // 8 * 8 + 8})"
                )
        _int_range("batch_size", self.batch_size, 1, 64)
        _int_range("n_iter", self.n_iter, 1, 10_000)
        _int_range("clip_skip", self.clip_skip, 1, 12)
        from gouache.prompts.encode import EMPHASIS_MODES

        if self.emphasis not in EMPHASIS_MODES:
            raise InvalidArgument(f"`emphasis` must be one of {', '.join(EMPHASIS_MODES)}, got {self.emphasis!r}")
        resolve(self.sampler, self.scheduler)

    def with_seed(self) -> "GenerationRequest":
        """A copy whose seed is fixed: -1 becomes a random 32-bit seed, as in AUTOMATIC1111."""
        if self.seed != -1:
            return replace(self)
        return replace(self, seed=random.randrange(MAX_SEED))


def _int_range(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"`{name}` must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidArgument(f"`{name}` must be between {lo} and {hi}, got {value}")


@dataclass
class GeneratedImage:
    """One image with exactly what made it: ``request`` has batch size 1 and this image's seed."""

    image: Image.Image
    request: GenerationRequest
    infotext: str
    params: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.request.seed

    def save(self, path, overwrite: bool = False):
        from gouache.metadata.png import save_png

        return save_png(self.image, path, self.infotext, overwrite=overwrite)


def request_from_infotext(text: str) -> GenerationRequest:
    """The request that made an image, from its AUTOMATIC1111 infotext (``gouache generate --from``).

    Keys the text leaves out keep gouache's defaults; the model is looked up by its recorded name.

    >>> r = request_from_infotext("a cat\\nNegative prompt: dog\\nSteps: 30, Sampler: DPM++ 2M Karras, "
    ...                           "CFG scale: 6, Seed: 5, Size: 64x96, Model: gouache-tiny")
    >>> r.steps, r.sampler, r.seed, (r.width, r.height), r.negative_prompt
    (30, 'DPM++ 2M Karras', 5, (64, 96), 'dog')
    """
    from gouache.metadata.infotext import parse_infotext

    p = parse_infotext(text)
    if len(p.params) < 3:
        raise InvalidArgument("the image's parameters have no settings line (Steps, Sampler, Seed, ...)")
    fields = {
        "steps": p.steps,
        "cfg_scale": p.cfg_scale,
        "sampler": p.sampler,
        "scheduler": p.schedule_type,
        "seed": p.seed,
        "model": p.model,
        "width": p.size[0] if p.size else None,
        "height": p.size[1] if p.size else None,
        "clip_skip": p.clip_skip,
        "emphasis": p.params.get("Emphasis"),
        "old_prompt_editing": True if p.params.get("Old prompt editing timelines") == "True" else None,
    }
    return GenerationRequest(p.prompt, p.negative_prompt, **{k: v for k, v in fields.items() if v is not None})
