"""Measure a model against the judge: seen colour–shape pairs and the three held-out pairs.

The figures in the README come from ``gouache evaluate`` (64 images per set, 20 steps of DPM++ 2M).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def evaluate(cfg: EvalConfig, progress=None) -> dict[str, Score]:
    """{"seen": Score, "held_out": Score} for ``cfg.n`` images each; image i uses seed ``cfg.seed + i``."""
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    model = load_model(cfg.model)
    results = {}
    for name, held_out in (("seen", False), ("held_out", True)):
        prompts = evaluation_prompts(held_out, cfg.n)
        images = []
        for i, prompt in enumerate(prompts):
            req = GenerationRequest(prompt, steps=cfg.steps, sampler=cfg.sampler, cfg_scale=cfg.cfg_scale,
                                    seed=cfg.seed + i)
            out = txt2img(model, req)[0]
            images.append(out.image)
            if cfg.save:
                from gouache.metadata.png import save_png

                Path(cfg.save, name).mkdir(parents=True, exist_ok=True)
                save_png(out.image, Path(cfg.save, name, f"{i:03d}.png"), out.infotext, overwrite=True)
            if progress:
                progress(i + 1, len(prompts))
        results[name] = score(images, prompts)
    return results
