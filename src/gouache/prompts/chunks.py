"""Prompt text to CLIP token chunks of 75, with per-token weights, as AUTOMATIC1111 builds them.

This matches A1111's ``FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`` (v1.6 to v1.10):

1. :func:`gouache.prompts.attention` splits the text into weighted fragments, ``BREAK`` included.
2. Each fragment is tokenized on its own (no BOS/EOS); every token takes its fragment's weight.
3. Tokens fill chunks of 75. When a chunk is full and the last comma is at most 20 tokens back,
   the tokens after that comma move to the next chunk, so a phrase is not cut in two. ``BREAK``
   closes the chunk at once.
4. Each chunk is padded with EOS to 75 and wrapped: ``[BOS] + 75 + [EOS]`` = 77 ids, weight 1.0 for
   BOS, EOS and padding. SD 2.x / SDXL's OpenCLIP pads with another id: A1111 swaps everything after
   the first EOS at encoding time, see :meth:`PromptChunk.padded_with`.

>>> from gouache.models.clip_tokenizer import load_clip_tokenizer    # doctest: +SKIP
>>> [c.ids[:4] for c in tokenize_chunks(load_clip_tokenizer(), "a cat BREAK a dog")]  # doctest: +SKIP
[[49406, 320, 2368, 49407], [49406, 320, 1929, 49407]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gouache.errors import InvalidArgument
from gouache.prompts.attention import attention

EMBEDDING_PLACEHOLDER_ID = 0  # A1111 writes token 0 where an embedding's vectors will go


@dataclass(frozen=True)
class EmbeddingMatch:
    """What an embedding lookup found at a token position (see :data:`EmbeddingLookup`)."""

    embedding: Any  # opaque here; the conditioning side puts its vectors in
    vectors: int  # positions it fills in the chunk
    length: int  # prompt tokens its trigger word spans


EmbeddingLookup = Callable[[Sequence[int], int], "EmbeddingMatch | None"]
"""``lookup(tokens, position)``: the textual-inversion embedding whose trigger word starts at
``tokens[position]`` (one fragment's ids), or None. A1111's ``embedding_db.find_embedding_at_position``."""


@dataclass
class EmbeddingFix:
    """An embedding to write into a chunk: its vectors go to ``ids[offset + 1 : offset + 1 + vectors]``.

    ``offset`` counts prompt tokens, not the BOS, as A1111's ``PromptChunkFix`` does; those ids
    hold :data:`EMBEDDING_PLACEHOLDER_ID` until the conditioning side puts the vectors in.
    """

    offset: int
    embedding: Any


@dataclass
class PromptChunk:
    """One 77-id window: BOS, 75 prompt ids (EOS-padded), EOS; a weight per id."""

    ids: list[int]
    weights: list[float]
    fixes: list[EmbeddingFix] = field(default_factory=list)

    def padded_with(self, pad_id: int) -> list[int]:
        """The ids with everything after the first EOS set to ``pad_id`` (OpenCLIP's padding).

        A1111's ``process_tokens`` does this for SD 2.x and SDXL's second encoder, whose pad id
        (0) differs from EOS. The EOS id is the last id of every chunk.
        """
        eos = self.ids[-1]
        first = self.ids.index(eos)
        return self.ids[: first + 1] + [pad_id] * (len(self.ids) - first - 1)


class _ChunkBuilder:
    """Fills chunks token by token; the order of checks is A1111's, so the cut points are too."""

    def __init__(self, bos: int, eos: int, comma: int | None, length: int, backtrack: int):
        self.bos, self.eos, self.comma = bos, eos, comma
        self.length, self.backtrack = length, backtrack
        self.chunks: list[PromptChunk] = []
        self._start()

    def _start(self, ids=(), weights=(), fixes=()) -> None:
        self.ids, self.weights, self.fixes = list(ids), list(weights), list(fixes)
        self.last_comma = -1  # index in `ids` of the last comma, -1 for none

    def close(self) -> None:
        """Pad, wrap in BOS/EOS and start an empty chunk (also when this one is empty: BREAK)."""
        pad = self.length - len(self.ids)
        ids = [self.bos, *self.ids, *[self.eos] * pad, self.eos]
        weights = [1.0, *self.weights, *[1.0] * pad, 1.0]
        self.chunks.append(PromptChunk(ids, weights, self.fixes))
        self._start()

    def before_token(self, token: int) -> None:
        """Make room for ``token``: cut at the last comma within reach, or close a full chunk."""
        if token == self.comma:
            self.last_comma = len(self.ids)  # where the comma is about to go
        elif self.backtrack and len(self.ids) == self.length and self.last_comma != -1:
            if len(self.ids) - self.last_comma <= self.backtrack:
                self._cut_after_comma()
        if len(self.ids) == self.length:
            self.close()

    def _cut_after_comma(self) -> None:
        cut = self.last_comma + 1
        moved_ids, moved_weights = self.ids[cut:], self.weights[cut:]
        # A1111 leaves the fixes behind (a bug: the embedding lands in the old chunk's padding);
        # we move an embedding with its placeholder ids.
        moved_fixes = [EmbeddingFix(f.offset - cut, f.embedding) for f in self.fixes if f.offset >= cut]
        self.fixes = [f for f in self.fixes if f.offset < cut]
        del self.ids[cut:], self.weights[cut:]
        self.close()
        self._start(moved_ids, moved_weights, moved_fixes)

    def add(self, token: int, weight: float) -> None:
        self.ids.append(token)
        self.weights.append(weight)

    def add_embedding(self, match: EmbeddingMatch, weight: float) -> None:
        """An embedding's placeholder ids, kept in one chunk (closing this one if it won't fit)."""
        if len(self.ids) + match.vectors > self.length:
            self.close()
        self.fixes.append(EmbeddingFix(len(self.ids), match.embedding))
        self.ids.extend([EMBEDDING_PLACEHOLDER_ID] * match.vectors)
        self.weights.extend([weight] * match.vectors)

    def finish(self) -> list[PromptChunk]:
        if self.ids or not self.chunks:  # a trailing BREAK adds no empty chunk; "" gives one
            self.close()
        return self.chunks


def _check_embedding(match: EmbeddingMatch, length: int) -> None:
    if match.length < 1 or not 1 <= match.vectors <= length:
        raise InvalidArgument(
            f"embedding {match.embedding!r} takes {match.vectors} vectors for {match.length} prompt "
            f"tokens; it needs at least 1 of each and at most {length} vectors to fit in one chunk."
        )


def tokenize_chunks(
    tokenizer,
    text: str,
    *,
    chunk_length: int = 75,
    comma_backtrack: int = 20,
    emphasis: bool = True,
    embeddings: EmbeddingLookup | None = None,
) -> list[PromptChunk]:
    """``text`` as A1111's chunks: each ``chunk_length + 2`` ids with their weights.

    ``tokenizer`` is a ``transformers.CLIPTokenizer`` (or anything called the same way with
    ``bos_token_id``, ``eos_token_id`` and a ``,</w>`` token). ``comma_backtrack`` is A1111's
    "Prompt word wrap length limit" (``comma_padding_backtrack``, 0 turns it off).
    ``emphasis=False`` is A1111's Emphasis "None": the text is not parsed at all, so brackets and
    BREAK are plain words. ``embeddings`` finds textual-inversion trigger words (see
    :data:`EmbeddingLookup`); without it every token is an ordinary token.

    An empty text gives one chunk: BOS then 76 EOS.

    >>> chunks = tokenize_chunks(tokenizer, "a (cat:1.2)")   # doctest: +SKIP
    >>> chunks[0].ids[:4], chunks[0].weights[:4]             # doctest: +SKIP
    ([49406, 320, 2368, 49407], [1.0, 1.0, 1.2, 1.0])
    """
    _check_lengths(chunk_length, comma_backtrack)
    fragments = attention(text) if emphasis else [(text, 1.0)]
    texts = [fragment for fragment, _ in fragments]
    token_lists = tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    builder = _ChunkBuilder(bos, eos, _comma_id(tokenizer), chunk_length, comma_backtrack)

    for tokens, (fragment, weight) in zip(token_lists, fragments):
        if fragment == "BREAK" and weight == -1:
            builder.close()
            continue
        position = 0
        while position < len(tokens):
            builder.before_token(tokens[position])
            match = embeddings(tokens, position) if embeddings is not None else None
            if match is None:
                builder.add(tokens[position], weight)
                position += 1
            else:
                _check_embedding(match, chunk_length)
                builder.add_embedding(match, weight)
                position += match.length
    return builder.finish()


def _comma_id(tokenizer) -> int | None:
    """The id of ``,</w>`` (267 in CLIP), which A1111 looks up by that name; None if there is none."""
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    return None if comma == tokenizer.unk_token_id else comma


def _check_lengths(chunk_length: int, comma_backtrack: int) -> None:
    if isinstance(chunk_length, bool) or not isinstance(chunk_length, int) or chunk_length < 1:
        raise InvalidArgument(
            f"`chunk_length` must be a positive whole number (CLIP: 75), not {chunk_length!r}."
        )
    if isinstance(comma_backtrack, bool) or not isinstance(comma_backtrack, int) or comma_backtrack < 0:
        raise InvalidArgument(
            "`comma_backtrack` must be a whole number >= 0 (A1111's default is 20; 0 turns it off), "
            f"not {comma_backtrack!r}."
        )


def empty_chunk_like(chunk: PromptChunk) -> PromptChunk:
    """A chunk of the same length holding nothing: its BOS, then EOS to the end; all weights 1.0.

    This is what A1111 encodes for an empty prompt.
    """
    bos, eos = chunk.ids[0], chunk.ids[-1]
    return PromptChunk([bos] + [eos] * (len(chunk.ids) - 1), [1.0] * len(chunk.ids))


def pad_to_same_length(
    a: Sequence[PromptChunk], b: Sequence[PromptChunk]
) -> tuple[list[PromptChunk], list[PromptChunk]]:
    """Both chunk lists, the shorter one extended with empty chunks to the longer one's count.

    For a prompt and its negative prompt: A1111 (option "Pad prompt/negative prompt") pads the
    shorter conditioning with encodings of the empty prompt, i.e. of :func:`empty_chunk_like`.
    A1111 encodes those empty chunks on their own, so do not let them join a real chunk's batch
    when "Original" emphasis renormalizes the mean.
    """
    if not a or not b:
        raise InvalidArgument(
            "pad_to_same_length needs at least one chunk on each side; tokenize_chunks always gives one, "
            f"but got {len(a)} and {len(b)}."
        )
    count = max(len(a), len(b))
    return (
        list(a) + [empty_chunk_like(a[0]) for _ in range(count - len(a))],
        list(b) + [empty_chunk_like(b[0]) for _ in range(count - len(b))],
    )
