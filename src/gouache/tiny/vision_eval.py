"""The bars of the built-in CLIP and captioner, measured on 64 seen-pair and 64 held-out-pair images.

* **CLIP, zero-shot rank 1** (:func:`clip_rank1`): each image against all 336 captions of the world
  (:func:`gouache.tiny.pairs.every_caption`); right when its own caption scores highest.
* **Captioner, exact caption** (:func:`caption_exact`): greedy decoding; right when the text is the
  image's caption, character for character.

Both take a transformers model and its processor (a ``CLIPProcessor``, a ``BlipProcessor``) as
``from_pretrained`` gives them, so a run's validation and the shipped folder are measured the same way.

>>> bars(clip_rank1, model, processor)            # doctest: +SKIP
{'seen': Rate(right=63, n=64, ...), 'held_out': Rate(right=58, n=64, ...)}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gouache.tiny.pairs import EVAL_SEED, evaluation_items, every_caption

BATCH = 64


@dataclass
class Rate:
    right: int = 0
    n: int = 0
    misses: list[tuple[str, str]] = field(default_factory=list)  # (wanted, given)

    @property
    def rate(self) -> float:
        return self.right / self.n if self.n else 0.0

    def add(self, wanted: str, given: str) -> None:
        self.n += 1
        self.right += wanted == given
        if wanted != given:
            self.misses.append((wanted, given))

    def summary(self) -> str:
        return f"{self.right}/{self.n} = {self.rate:.1%}"


@torch.no_grad()
def clip_rank1(model, processor, items) -> Rate:
    """How many ``items`` rank their own caption first among all the world's captions."""
    captions = every_caption()
    model.eval()
    text = processor(text=captions, padding=True, return_tensors="pt")
    dtype = next(model.parameters()).dtype
    text_embeds = model.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
    text_embeds = _unit(text_embeds)
    out = Rate()
    for first in range(0, len(items), BATCH):
        chunk = items[first : first + BATCH]
        pixels = processor(images=[it.image for it in chunk], return_tensors="pt")["pixel_values"].to(dtype)
        scores = _unit(model.get_image_features(pixel_values=pixels)) @ text_embeds.T
        for item, best in zip(chunk, scores.argmax(-1).tolist()):
            out.add(item.caption, captions[best])
    return out


def _unit(x) -> torch.Tensor:
    x = x if isinstance(x, torch.Tensor) else x.pooler_output  # transformers 5 may return an output object
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def caption_exact(model, processor, items, max_new_tokens: int = 20) -> Rate:
    """How many ``items`` the captioner describes with exactly their caption (greedy decoding)."""
    model.eval()
    dtype = next(model.parameters()).dtype
    out = Rate()
    for first in range(0, len(items), BATCH):
        chunk = items[first : first + BATCH]
        pixels = processor(images=[it.image for it in chunk], return_tensors="pt")["pixel_values"].to(dtype)
        ids = model.generate(pixel_values=pixels, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        for item, text in zip(chunk, processor.batch_decode(ids, skip_special_tokens=True)):
            out.add(item.caption, text.strip())
    return out


def bars(measure, model, processor, n: int = 64, seed: int = EVAL_SEED) -> dict[str, Rate]:
    """``measure`` (:func:`clip_rank1` or :func:`caption_exact`) on ``n`` seen and ``n`` held-out images."""
    return {name: measure(model, processor, evaluation_items(held_out, n, seed))
            for name, held_out in (("seen", False), ("held_out", True))}
