"""Prompts as AUTOMATIC1111 users write them: the text side, from a prompt string to token chunks.

A1111's order for one prompt, and the function for each step:

1. ``<lora:name:0.8>`` tags come out: :func:`extract_extra_networks` (:func:`lora_multipliers`).
2. ``AND`` splits it into weighted parts: :func:`split_and`.
3. Each part becomes a step schedule of texts: :func:`schedules`; :func:`text_at` picks one.
4. Each text becomes weighted 77-id chunks: :func:`tokenize_chunks` (emphasis via :func:`attention`).

>>> text, networks = extract_extra_networks("a [cat:dog:0.5] <lora:fur:0.8>")
>>> [(part, weight, schedules(part, 10)) for part, weight in split_and(text)]
[('a [cat:dog:0.5]', 1.0, [(5, 'a cat'), (10, 'a dog')])]

Nothing here imports torch; a tokenizer is passed in by the caller.
"""

from gouache.prompts.attention import attention
from gouache.prompts.chunks import (
    EmbeddingFix,
    EmbeddingLookup,
    EmbeddingMatch,
    PromptChunk,
    pad_to_same_length,
    tokenize_chunks,
)
from gouache.prompts.compose import (
    ExtraNetwork,
    LoraMultipliers,
    extract_extra_networks,
    lora_multipliers,
    split_and,
)
from gouache.prompts.schedule import schedules, text_at

__all__ = [
    "EmbeddingFix",
    "EmbeddingLookup",
    "EmbeddingMatch",
    "ExtraNetwork",
    "LoraMultipliers",
    "PromptChunk",
    "attention",
    "extract_extra_networks",
    "lora_multipliers",
    "pad_to_same_length",
    "schedules",
    "split_and",
    "text_at",
    "tokenize_chunks",
]
