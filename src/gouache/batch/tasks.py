"""What a batch is made of: jobs (one per line of the jobs file) and their images.

Each image has a fixed name, ``<job>-<image>-<seed>.png`` (``00007-001-1234.png``: line 7's second
image, seed 1234), so that a run started again knows which images are there; a job whose seed is
-1 gets one derived from its line (:func:`derived_seed`), so that it is the same in every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MODES = ("txt2img", "img2img", "inpaint")


def derived_seed(line: int, spec: str, salt: str = "seed") -> int:
    """A 32-bit seed fixed by the job's line number and options: what seed -1 becomes in a batch.

    >>> derived_seed(3, "abc") == derived_seed(3, "abc") != derived_seed(4, "abc")
    True
    """
    from gouache.pipelines.request import MAX_SEED

    digest = hashlib.sha256(f"{salt}:{line}:{spec}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED


def spec_hash(text: str) -> str:
    """A short fingerprint of a job's options, kept in the manifest to tell a changed job from a done one."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_name(line: int, image: int, seed: int) -> str:
    """``00007-001-1234.png``: the file of line ``line``'s image ``image`` (from 0), made with ``seed``."""
    return f"{line:05d}-{image:03d}-{seed}.png"


@dataclass
class Job:
    """One line of the jobs file: its request (validated, seeds fixed; None when the line is not a
    request, then ``error`` says why), the mode that runs it, the LoRA files it names by path
    ``(path, name)`` and how the model runs (a :class:`gouache.speed.SpeedSettings`)."""

    line: int
    spec: str
    mode: str = "txt2img"
    request: object = None  # a GenerationRequest (Img2ImgRequest, InpaintRequest)
    loras: tuple = ()
    speed: object = None
    error: str | None = None

    def count(self) -> int:
        """How many images the job makes: ``batch_size × n_iter``."""
        return self.request.batch_size * self.request.n_iter if self.request is not None else 0

    def tasks(self) -> list["ImageTask"]:
        """One task per image: image ``i`` is the request of seed ``seed + i`` (A1111's rule), which
        gouache makes alone exactly as it makes it in the batch (one image at a time through the UNet
        and the VAE, its own noise)."""
        req = self.request
        return [ImageTask(self.line, i, req.seed + i, image_name(self.line, i, req.seed + i), self.mode,
                          req.seeds_of(req.seed + i), self.loras, self.speed) for i in range(self.count())]


@dataclass
class ImageTask:
    """One image to make: what a worker gets (it travels to Ray's workers pickled)."""

    line: int
    image: int
    seed: int
    file: str
    mode: str
    request: object  # batch size 1, this image's seed
    loras: tuple = ()
    speed: object = None


@dataclass
class ImageResult:
    """What a worker gives back for one task: the PNG's bytes with its infotext, or the error's message."""

    line: int
    image: int
    seed: int
    file: str
    png: bytes | None = None
    error: str | None = None
    worker: str = ""  # host:pid of the worker that made it
