"""Measure a model against the judge: seen colour–shape pairs and the three held-out pairs.

The figures in the README come from ``gouache evaluate`` (64 images per set, 20 steps of DPM++ 2M).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gouache.tiny.judge import Score, evaluation_prompts, score


@dataclass
class EvalConfig:
    model: str | None = None
    n: int = 64
    steps: int = 20
    sampler: str = "DPM++ 2M"
    cfg_scale: float | None = None  # the model's default: 5 for gouache-tiny
    seed: int = 1000
    save: Path | None = None  # write every image with its infotext here
    dtype: str | None = None  # None: the default path's (gouache.speed.hardware)
    # more GenerationRequest fields for every image: the approximations, e.g. {"deepcache_interval": 3}
    request: dict = field(default_factory=dict)
    clip_score: bool = False  # also the mean CLIP score of the images against their prompts
    clip: str | None = None  # the CLIP model of the score: a name, a path, or None for gouache-tiny-clip

    def load(self):
        from gouache.pipelines.model import load_model

        return load_model(self.model, dtype=self.dtype)

    def make(self, prompt: str, i: int, cls=None, **kw):
        """The request for image ``i`` (seed ``seed + i``)."""
        from gouache.pipelines.request import GenerationRequest

        return (cls or GenerationRequest)(prompt, steps=self.steps, sampler=self.sampler, cfg_scale=self.cfg_scale,
                                          seed=self.seed + i, **{**self.request, **kw})


def judge(cfg: EvalConfig, images: list, prompts: list[str]) -> Score:
    """The judge's score of ``images`` against ``prompts``, with their mean CLIP score if ``cfg`` asks."""
    result = score(images, prompts)
    if cfg.clip_score:
        from gouache.vision.clip import clip_score, load_clip

        with load_clip(cfg.clip) as clip:
            result.clip_score = clip_score(images, prompts, clip)
    return result


def evaluate(cfg: EvalConfig, progress=None) -> dict[str, Score]:
    """{"seen": Score, "held_out": Score} for ``cfg.n`` images each; image i uses seed ``cfg.seed + i``."""
    from gouache.pipelines.txt2img import txt2img

    model = cfg.load()
    results = {}
    for name, held_out in (("seen", False), ("held_out", True)):
        prompts = evaluation_prompts(held_out, cfg.n)
        images = []
        for i, prompt in enumerate(prompts):
            out = txt2img(model, cfg.make(prompt, i))[0]
            images.append(out.image)
            if cfg.save:
                from gouache.metadata.png import save_png

                Path(cfg.save, name).mkdir(parents=True, exist_ok=True)
                save_png(out.image, Path(cfg.save, name, f"{i:03d}.png"), out.infotext, overwrite=True)
            if progress:
                progress(i + 1, len(prompts))
        results[name] = judge(cfg, images, prompts)
    return results


def _generate_and_score(cfg: EvalConfig, prompts: list[str], wanted: list[str], progress=None) -> Score:
    from gouache.pipelines.txt2img import txt2img

    model, images = cfg.load(), []
    for i, prompt in enumerate(prompts):
        images.append(txt2img(model, cfg.make(prompt, i))[0].image)
        if cfg.save:
            from gouache.metadata.png import save_png

            save_png(images[-1], Path(cfg.save, f"{i:03d}.png"), prompt, overwrite=True)
        if progress:
            progress(i + 1, len(prompts))
    return judge(cfg, images, wanted)


def evaluate_style(cfg: EvalConfig, suffix: str, progress=None) -> Score:
    """The seen-pair prompts with ``suffix`` appended (``", outline style <lora:gouache-outline:1>"``),
    judged against the plain caption; :attr:`Score.outline` counts the outlines."""
    wanted = evaluation_prompts(False, cfg.n)
    return _generate_and_score(cfg, [p + suffix for p in wanted], wanted, progress)


def evaluate_prompt(cfg: EvalConfig, prompt: str, expect: str, progress=None) -> Score:
    """One prompt ``cfg.n`` times (seeds ``cfg.seed + i``), judged against the caption ``expect``
    (``"a <sks> on a blue background"`` should give ``"a yellow circle on a blue background"``)."""
    return _generate_and_score(cfg, [prompt] * cfg.n, [expect] * cfg.n, progress)


def _other(prompt_triple: tuple[str, str, str], rng) -> tuple[str, str, str]:
    """Another seen colour and shape on the same background (for the edit tasks)."""
    from gouache.tiny.shapes import COLOURS, HELD_OUT, SHAPES

    colour, shape, bg = prompt_triple
    choices = [(c, s) for c in COLOURS for s in SHAPES
               if c not in (colour, bg) and s != shape and (c, s) not in HELD_OUT]
    c, s = rng.choice(choices)
    return c, s, bg


def evaluate_img2img(cfg: EvalConfig, strength: float, other_prompt: bool) -> Score:
    """Init: a drawn dataset image; prompt: its own caption, or *another* colour and shape on the
    same background. Scored against the init's caption below strength 1, against the prompt at 1."""
    import random

    from gouache.pipelines.img2img import img2img
    from gouache.pipelines.request import Img2ImgRequest
    from gouache.tiny.shapes import ShapesDataset, caption

    model, ds, rng = cfg.load(), ShapesDataset(seed=7), random.Random(cfg.seed)
    images, wanted = [], []
    for i in range(cfg.n):
        item = ds[i]
        spec = item.spec
        target = caption(*_other((spec.colour, spec.shape, spec.background), rng)) if other_prompt else item.caption
        req = cfg.make(target, i, Img2ImgRequest, init_image=item.image, denoising_strength=strength)
        images.append(img2img(model, req)[0].image)
        wanted.append(target if strength >= 1.0 else item.caption)
    return judge(cfg, images, wanted)


def evaluate_inpaint(cfg: EvalConfig, margin: int = 4, mask_blur: int = 2) -> tuple[Score, int]:
    """Generate an image, mask a box around its shape (grown by ``margin`` px), prompt another
    colour and shape on the same background. Returns the judge's score against the new prompt and
    the number of images where a pixel outside the blur-grown mask changed (should be 0)."""
    import random

    import numpy as np
    from PIL import Image

    from gouache.pipelines.inpaint import inpaint
    from gouache.pipelines.request import InpaintRequest
    from gouache.pipelines.txt2img import txt2img
    from gouache.tiny.judge import parse_prompt
    from gouache.tiny.shapes import caption

    model, rng = cfg.load(), random.Random(cfg.seed)
    images, wanted, leaks = [], [], 0
    for i, prompt in enumerate(evaluation_prompts(False, cfg.n, seed=cfg.seed)):
        base = txt2img(model, cfg.make(prompt, i))[0].image
        arr = np.asarray(base)
        bg = arr[0, 0].astype(int)
        ys, xs = np.nonzero(np.abs(arr.astype(int) - bg).sum(-1) > 60)  # the shape: far from the corner colour
        box = (max(xs.min() - margin, 0), max(ys.min() - margin, 0), min(xs.max() + margin + 1, 64), min(ys.max() + margin + 1, 64))
        mask = Image.new("L", base.size)
        mask.paste(255, box)
        target = caption(*_other(parse_prompt(prompt), rng))
        req = InpaintRequest(target, steps=cfg.steps, sampler=cfg.sampler, cfg_scale=cfg.cfg_scale, seed=cfg.seed + i,
                             init_image=base, mask=mask, mask_blur=mask_blur, inpainting_fill=2, denoising_strength=1.0)
        out = inpaint(model, req)[0].image
        reach = int(2.5 * mask_blur + 0.5)  # how far A1111's blurred mask reaches past the box
        keep = np.ones(arr.shape[:2], bool)
        keep[max(box[1] - reach, 0):box[3] + reach, max(box[0] - reach, 0):box[2] + reach] = False
        leaks += not np.array_equal(np.asarray(out)[keep], arr[keep])
        images.append(out)
        wanted.append(target)
    return judge(cfg, images, wanted), leaks
