"""Per-step conditioning: what the denoiser is told about the prompt at each sampling step.

:class:`Conditioning` is one text's tensors (hidden states; SDXL's pooled text and size ids);
:func:`conditioning_schedule` turns a prompt and a negative prompt, with their AND parts and
prompt-editing schedules, into ``at(step) -> ([(cond, weight) per AND part], uncond)``, the form
the guided model call (:class:`gouache.sampling.guidance.CFGDenoiser`) asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from gouache.prompts.plan import ScheduledPrompt


@dataclass
class Conditioning:
    """Text conditioning: hidden states (B, 77·k, D) and, for SDXL, pooled output + size/crop ids;
    with IP-Adapters, ``image_embeds``: one tensor per adapter, ``(B, n_images, ...)``, the image
    encoder's output that the UNet's image projection reads (diffusers' ``image_embeds``)."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None
    image_embeds: tuple[torch.Tensor, ...] | None = None

    def added_kwargs(self, images: bool = True) -> dict | None:
        """The UNet's ``added_cond_kwargs``: SDXL's pooled text and size ids, and (unless ``images``
        is False: a ControlNet reads the text only) the image prompts' embeddings."""
        out = {} if self.pooled is None else {"text_embeds": self.pooled, "time_ids": self.time_ids}
        if images and self.image_embeds is not None:
            out["image_embeds"] = list(self.image_embeds)
        return out or None

    def repeat(self, n: int) -> "Conditioning":
        """The same conditioning for ``n`` images."""
        rep = lambda t: None if t is None else t.expand(n, *t.shape[1:])  # noqa: E731
        images = None if self.image_embeds is None else tuple(rep(e) for e in self.image_embeds)
        return Conditioning(rep(self.hidden), rep(self.pooled), rep(self.time_ids), images)

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        """Join along the batch axis (all must have the same number of tokens)."""
        cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        images = None
        if items[0].image_embeds is not None:
            images = tuple(torch.cat(parts) for parts in zip(*(c.image_embeds for c in items)))
        return Conditioning(cat([c.hidden for c in items]), cat([c.pooled for c in items]),
                            cat([c.time_ids for c in items]), images)


# step -> ([(cond, weight) for each AND part], uncond), all of batch size 1 and equal length
ConditioningAt = Callable[[int], tuple[list[tuple[Conditioning, float]], Conditioning]]


def conditioning_schedule(encoder, prompt: str, negative_prompt: str, steps: int, old_scheduling: bool = False,
                          time_ids: torch.Tensor | None = None) -> ConditioningAt:
    """``prompt`` and ``negative_prompt`` as the denoiser asks for them at each of ``steps`` steps.

    ``encoder`` is a :class:`~gouache.prompts.encode.PromptEncoder`. AND parts and prompt-editing
    schedules are resolved per step, every distinct text is encoded once (up front), and everything
    is padded to the same number of 77-token chunks. ``time_ids``: SDXL's size/crop ids.
    """
    positive = ScheduledPrompt.parse(prompt, steps, old_scheduling=old_scheduling)
    negative = ScheduledPrompt.parse(negative_prompt, steps, use_and=False, old_scheduling=old_scheduling)
    empty = encoder.empty_chunk()
    for text in sorted(positive.texts() | negative.texts()):
        encoder.encode(text)

    made: dict = {}  # the same texts give the same tensors at every step (the model's caches know them by identity)

    def at(step: int):
        parts, negative_text = tuple(positive.at(step)), negative.at(step)[0][0]
        if (parts, negative_text) not in made:
            conds = [(encoder.encode(text), w) for text, w in parts]
            uncond = encoder.encode(negative_text)
            padded = pad_conditionings([uncond] + [c for c, _ in conds], empty)
            padded = [Conditioning(c.hidden, c.pooled, time_ids) for c in padded]
            made[parts, negative_text] = (list(zip(padded[1:], (w for _, w in conds))), padded[0])
        conds, uncond = made[parts, negative_text]
        return list(conds), uncond

    return at


def pad_conditionings(conds: list[Conditioning], empty: Conditioning) -> list[Conditioning]:
    """Bring hidden states to the same number of 77-token chunks by appending empty chunks
    (A1111 pads cond and uncond this way when their lengths differ)."""
    longest = max(c.hidden.shape[1] for c in conds)
    out = []
    for c in conds:
        missing = (longest - c.hidden.shape[1]) // empty.hidden.shape[1]
        hidden = torch.cat([c.hidden] + [empty.hidden] * missing, dim=1) if missing else c.hidden
        out.append(Conditioning(hidden, c.pooled, c.time_ids))
    return out


def with_image_embeds(at: ConditioningAt, embeds: tuple[torch.Tensor, ...],
                      negative: tuple[torch.Tensor, ...]) -> ConditioningAt:
    """``at`` with image prompts: every prompt part gets ``embeds`` and the unconditional side
    ``negative`` (IP-Adapter's own CFG negative: zero image embeddings, as h94 and diffusers use),
    so classifier-free guidance steers towards the image prompt as it does towards the text."""

    def imaged(step: int):
        conds, uncond = at(step)
        return [(replace(c, image_embeds=embeds), w) for c, w in conds], replace(uncond, image_embeds=negative)

    return imaged


def with_time_ids(at: ConditioningAt, time_ids: torch.Tensor, uncond_time_ids: torch.Tensor | None = None,
                  step_map: Callable[[int], int] | None = None) -> ConditioningAt:
    """``at`` with other SDXL size ids (the hires pass's size, a refiner's aesthetic scores) and,
    with ``step_map``, read on another timeline (the hires pass stays on the first pass's)."""
    uncond_ids = time_ids if uncond_time_ids is None else uncond_time_ids

    def moved(step: int):
        conds, uncond = at(step if step_map is None else step_map(step))
        if time_ids is None:
            return conds, uncond
        return [(replace(c, time_ids=time_ids), w) for c, w in conds], replace(uncond, time_ids=uncond_ids)

    return moved
