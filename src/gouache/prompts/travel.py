"""Prompt travel: a video's prompt that changes at given frames, as the A1111 AnimateDiff extension writes it.

::

    a circle, flat colours          <- head: joined before every keyframe's prompt
    0: red on a blue background
    8: blue on a blue background
    outline style                   <- tail: joined after it

Lines ``FRAME: prompt`` are keyframes; lines before the first are the head, after the last the
tail; each keyframe's prompt is ``head, prompt, tail``. One line works too, keyframes after commas:
``0: a red circle on a blue background, 8: a blue circle on a blue background``. Between two
keyframes each frame's text embedding is the linear mix of theirs (the extension's interpolation);
before the first and after the last it holds.

Parsing is one pass over the text (no regular expression on the whole prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from gouache.errors import InvalidArgument
from gouache.prompts.conditioning import Conditioning, ConditioningAt, pad_conditionings


@dataclass(frozen=True)
class Keyframe:
    frame: int
    prompt: str


def _key(line: str) -> tuple[int, str] | None:
    """``(frame, rest)`` when ``line`` starts with digits and a colon (spaces allowed), else None."""
    text = line.lstrip()
    i = 0
    while i < len(text) and text[i].isdigit():
        i += 1
    if i == 0 or i > 6:
        return None
    j = i
    while j < len(text) and text[j] == " ":
        j += 1
    if j >= len(text) or text[j] != ":":
        return None
    return int(text[:i]), text[j + 1:].strip()


def parse_travel(prompt: str) -> list[Keyframe] | None:
    """The keyframes of a travelling prompt, in frame order, or None when ``prompt`` has none.

    >>> parse_travel("0: a red circle, 8: a blue circle")
    [Keyframe(frame=0, prompt='a red circle'), Keyframe(frame=8, prompt='a blue circle')]
    >>> parse_travel("a circle\\n0: red\\n4: blue\\noutline style")[1].prompt
    'a circle, blue, outline style'
    """
    lines = [line for line in prompt.splitlines() if line.strip()]
    if len(lines) == 1:
        return _one_line(lines[0])
    keyed = [(_key(line), line) for line in lines]
    first = next((k for k, (key, _) in enumerate(keyed) if key is not None), None)
    if first is None:
        return None
    last = max(k for k, (key, _) in enumerate(keyed) if key is not None)
    head = ", ".join(line.strip() for _, line in keyed[:first])
    tail = ", ".join(line.strip() for _, line in keyed[last + 1:])
    keys = []
    for key, line in keyed[first:last + 1]:
        if key is None:
            raise InvalidArgument(f"prompt travel: {line.strip()[:60]!r} sits between keyframes; start each line "
                                  "between the first and last keyframe with FRAME:, e.g. 8: a blue circle")
        keys.append(Keyframe(key[0], ", ".join(p for p in (head, key[1], tail) if p)))
    return _ordered(keys)


def _one_line(line: str) -> list[Keyframe] | None:
    if _key(line) is None:
        return None
    keys, current = [], None
    for piece in line.split(","):
        key = _key(piece)
        if key is not None:
            current = [key[0], [key[1]]]
            keys.append(current)
        else:
            current[1].append(piece.strip())
    return _ordered([Keyframe(f, ", ".join(p for p in parts if p)) for f, parts in keys])


def _ordered(keys: list[Keyframe]) -> list[Keyframe]:
    frames = [k.frame for k in keys]
    if len(set(frames)) != len(frames):
        raise InvalidArgument(f"prompt travel: a frame has two keyframes ({', '.join(map(str, frames))}); give each once")
    return sorted(keys, key=lambda k: k.frame)


def check_travel(keys: list[Keyframe], frames: int) -> None:
    """Every keyframe inside the clip."""
    late = [k.frame for k in keys if k.frame >= frames]
    if late:
        raise InvalidArgument(f"prompt travel: keyframe {late[0]} is past the last frame ({frames - 1}); "
                              "use frames 0 to frames-1 or make the clip longer")


def mix_weights(keys: list[int], frames: int) -> torch.Tensor:
    """``(frames, len(keys))``: how much of each keyframe's embedding frame ``f`` takes.

    >>> mix_weights([0, 4], 6)[:, 1].tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    w = torch.zeros(frames, len(keys))
    for f in range(frames):
        if f <= keys[0]:
            w[f, 0] = 1
        elif f >= keys[-1]:
            w[f, -1] = 1
        else:
            k = max(i for i, key in enumerate(keys) if key <= f)
            t = (f - keys[k]) / (keys[k + 1] - keys[k])
            w[f, k], w[f, k + 1] = 1 - t, t
    return w


def travel_schedule(ats: list[ConditioningAt], keys: list[int], frames: int, empty: Conditioning) -> ConditioningAt:
    """One :data:`ConditioningAt` for the clip from one per keyframe: each prompt part's hidden
    states (and SDXL's pooled text) per frame, ``(frames, tokens, dim)``, mixed by :func:`mix_weights`;
    the negative prompt is shared. Keyframes must have as many AND parts as each other."""
    w = mix_weights(keys, frames)

    def at(step: int):
        each = [a(step) for a in ats]
        n_parts = {len(conds) for conds, _ in each}
        if len(n_parts) != 1:
            raise InvalidArgument("prompt travel: every keyframe's prompt needs as many AND parts as the others")
        flat = [c for conds, uncond in each for c in [uncond] + [c for c, _ in conds]]
        padded = iter(pad_conditionings(flat, empty))
        per_key = [(next(padded), [next(padded) for _ in conds]) for conds, _ in each]
        mixed = []
        for p in range(n_parts.pop()):
            hidden = torch.stack([key[1][p].hidden[0] for key in per_key])  # (keys, tokens, dim)
            pooled = None
            if per_key[0][1][p].pooled is not None:
                pooled = torch.einsum("fk,kd->fd", w.to(hidden), torch.stack([key[1][p].pooled[0] for key in per_key]))
            cond = Conditioning(torch.einsum("fk,ktd->ftd", w.to(hidden), hidden), pooled, per_key[0][1][p].time_ids)
            mixed.append((cond, each[0][0][p][1]))
        uncond = per_key[0][0]
        time_ids = uncond.time_ids
        return [(replace(c, time_ids=None if time_ids is None else time_ids.expand(frames, -1)), weight)
                for c, weight in mixed], uncond

    return at
