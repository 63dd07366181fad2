"""A prompt as the sampler sees it: AND parts, each with its schedule of texts over the steps.

>>> p = ScheduledPrompt.parse("[a red:a blue:0.5] circle AND a square :0.5", steps=10)
>>> p.at(0), p.at(7)
([('a red circle', 1.0), (' a square', 0.5)], [('a blue circle', 1.0), (' a square', 0.5)])
"""

from __future__ import annotations

from dataclasses import dataclass

from gouache.prompts.compose import extract_extra_networks, split_and
from gouache.prompts.schedule import schedules, text_at


@dataclass(frozen=True)
class ScheduledPrompt:
    parts: tuple[tuple[tuple[tuple[int, str], ...], float], ...]  # ((schedule, weight), ...)

    @classmethod
    def parse(cls, prompt: str, steps: int, *, use_and: bool = True, old_scheduling: bool = False) -> "ScheduledPrompt":
        """``use_and=False`` for negative prompts: A1111 does not split them on ``AND``.

        Extra-network tags (``<lora:...>``) are removed here; the caller reads them from the
        original prompt with :func:`~gouache.prompts.extract_extra_networks`.
        """
        text, _ = extract_extra_networks(prompt)
        parts = split_and(text) if use_and else [(text, 1.0)]
        return cls(tuple((tuple(schedules(t, steps, old_scheduling=old_scheduling)), w) for t, w in parts))

    def at(self, step: int) -> list[tuple[str, float]]:
        """The texts in force at 0-based sampling ``step``, with their AND weights."""
        return [(text_at(list(schedule), step), w) for schedule, w in self.parts]

    def texts(self) -> set[str]:
        """Every text the prompt uses at some step (to encode them all up front)."""
        return {text for schedule, _ in self.parts for _, text in schedule}
