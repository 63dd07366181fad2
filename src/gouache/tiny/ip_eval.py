"""The IP-Adapter bar: an image of a shape prompts the generation as its caption would, and the
text still sets the background.

Each case: a ``{colour} {shape}`` drawn on some background (the image prompt, at a random place
and size), and the text ``on a {background} background`` with another background. The generated
image is judged (:func:`gouache.tiny.judge.read_image`): right when its shape has the image
prompt's colour and kind and its background is the text's. Cases come from seen colour-shape
pairs or from the held-out ones (:data:`gouache.tiny.shapes.HELD_OUT`), each derived from its
index, so a figure is made again from its seed.

>>> figures = ip_adapter_bars(load_model(), "gouache-tiny-ip-adapter", n=64)   # doctest: +SKIP
>>> figures["seen"].rate, figures["held_out"].rate                            # doctest: +SKIP
(0.9, 0.7)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image

from gouache.tiny.shapes import COLOURS, HELD_OUT, SHAPES, draw, random_spec

BARS = {"seen": 0.85, "held_out": 0.65}  # docs/ip-adapter.md


@dataclass(frozen=True)
class IPCase:
    """One case: the image prompt, the text, and what the judge should read."""

    image: Image.Image
    text: str
    colour: str
    shape: str
    background: str


def ip_case(index: int, held_out: bool, seed: int = 0) -> IPCase:
    """Case ``index`` of the seen or held-out set."""
    rng = random.Random(seed * 1_000_003 + index * 2 + int(held_out))
    pairs = sorted(HELD_OUT) if held_out else [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
    colour, shape = rng.choice(pairs)
    background = rng.choice([c for c in COLOURS if c != colour])
    prompt_bg = rng.choice([c for c in COLOURS if c not in (colour, background)])
    spec = random_spec(rng, colour=colour, shape=shape, background=prompt_bg, include_held_out=True)
    return IPCase(draw(spec), f"on a {background} background", colour, shape, background)


@dataclass
class IPScore:
    """How many of ``n`` generations the judge read right: colour, shape, background, all three."""

    n: int = 0
    colour: int = 0
    shape: int = 0
    background: int = 0
    right: int = 0
    misses: list = field(default_factory=list)  # (index, what was read) of the first few wrong ones

    @property
    def rate(self) -> float:
        return self.right / self.n if self.n else 0.0

    def as_dict(self) -> dict:
        n = max(self.n, 1)
        return {"n": self.n, "all": round(self.right / n, 4), "colour": round(self.colour / n, 4),
                "shape": round(self.shape / n, 4), "background": round(self.background / n, 4)}

    def add(self, index: int, case: IPCase, image: Image.Image) -> None:
        from gouache.tiny.judge import read_image

        read = read_image(image)
        hits = (read.colour == case.colour, read.shape == case.shape, read.background == case.background)
        self.n += 1
        self.colour, self.shape, self.background = self.colour + hits[0], self.shape + hits[1], self.background + hits[2]
        self.right += all(hits)
        if not all(hits) and len(self.misses) < 8:
            self.misses.append((index, read.as_tuple()))


def ip_adapter_score(model, adapter, held_out: bool, n: int = 64, seed: int = 0, steps: int = 20,
                     scale: float = 1.0, progress=None) -> IPScore:
    """The judged score of ``n`` cases with ``adapter`` (a name, a path or a loaded adapter)."""
    from gouache.adapters.ip_spec import IPAdapterSpec
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    score = IPScore()
    for k in range(n):
        case = ip_case(k, held_out, seed)
        request = GenerationRequest(case.text, seed=seed + k, steps=steps,
                                    ip_adapters=[IPAdapterSpec(adapter, [case.image], scale)])
        score.add(k, case, txt2img(model, request)[0].image)
        if progress is not None:
            progress(k + 1, n)
    return score


def ip_adapter_bars(model, adapter, n: int = 64, seed: int = 0, steps: int = 20, scale: float = 1.0,
                    progress=None) -> dict[str, IPScore]:
    """``{"seen": IPScore, "held_out": IPScore}``: the bar's two rows."""
    return {name: ip_adapter_score(model, adapter, name == "held_out", n, seed, steps, scale, progress)
            for name in ("seen", "held_out")}
