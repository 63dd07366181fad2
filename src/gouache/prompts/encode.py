"""Prompt text → conditioning tensors, as AUTOMATIC1111 computes them.

For each text encoder of the model (one for SD 1.x/2.x, two for SDXL):

1. :func:`~gouache.prompts.tokenize_chunks` cuts the text into 77-id chunks with per-token weights.
2. Each chunk goes through the encoder. The output is ``last_hidden_state``; with Clip skip N > 1,
   ``hidden_states[-N]`` through the final layer norm (A1111's rule). SDXL takes the penultimate
   layer of both encoders, without the norm, and the pooled projection of the first chunk.
3. Emphasis ("Original"): every token's output vector is multiplied by its weight, then the whole
   chunk batch is rescaled so its mean is what it was before (A1111's ``EmphasisOriginal``). The
   weights act on the encoder's *output*, not on its input embeddings.
4. The chunk outputs are joined along the token axis: (1, 77·k, D).

Identical texts are encoded once per :class:`PromptEncoder`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from gouache.errors import InvalidArgument
from gouache.prompts.chunks import PromptChunk, tokenize_chunks
from gouache.prompts.conditioning import Conditioning

EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")  # A1111's "Emphasis" setting


@dataclass
class PromptEncoder:
    """Encodes texts for one loaded model (``gouache.pipelines.model.LoadedModel``), with a cache."""

    model: object
    clip_skip: int = 1
    emphasis: str = "Original"
    embeddings: object = None  # a gouache.adapters.embeddings.EmbeddingLibrary, or None
    cache: dict[str, Conditioning] = field(default_factory=dict)
    _lookups: dict[int, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.clip_skip, bool) or not isinstance(self.clip_skip, int) or not 1 <= self.clip_skip <= 12:
            raise InvalidArgument(f"`clip_skip` must be a whole number from 1 to 12, got {self.clip_skip!r}")
        if self.emphasis not in EMPHASIS_MODES:
            raise InvalidArgument(f"`emphasis` must be one of {', '.join(EMPHASIS_MODES)}, got {self.emphasis!r}")

    def encoders(self) -> list[tuple[object, object]]:
        p = self.model.pipeline
        pairs = [(p.tokenizer, p.text_encoder)]
        if getattr(p, "text_encoder_2", None) is not None:
            pairs.append((p.tokenizer_2, p.text_encoder_2))
        return [(t, e) for t, e in pairs if e is not None]

    def chunks(self, tokenizer, encoder, text: str) -> list[PromptChunk]:
        lookup = None
        if self.embeddings is not None:
            if id(encoder) not in self._lookups:
                self._lookups[id(encoder)] = self.embeddings.lookup(tokenizer, encoder.config.hidden_size)
            lookup = self._lookups[id(encoder)]
        return tokenize_chunks(tokenizer, text, emphasis=self.emphasis != "None", embeddings=lookup)

    @torch.no_grad()
    def encode(self, text: str) -> Conditioning:
        """The conditioning of one text, batch size 1: hidden (1, 77·k, D), and SDXL's pooled output."""
        if text not in self.cache:
            self.cache[text] = self._encode(text)
        return self.cache[text]

    def encode_for_training(self, text: str) -> Conditioning:
        """:meth:`encode` without the cache and with gradients: textual inversion trains through it."""
        return self._encode(text)

    def _encode(self, text: str) -> Conditioning:
        sdxl = self.model.is_sdxl
        hidden, pooled = [], None
        for tokenizer, encoder in self.encoders():
            chunks = self.chunks(tokenizer, encoder, text)
            outs = [self._encode_chunk(tokenizer, encoder, c, sdxl) for c in chunks]
            hidden.append(torch.cat([h for h, _ in outs], dim=1))
            pooled = outs[0][1]  # the last encoder's (SDXL: the projection of text_encoder_2), first chunk
        h = torch.cat(hidden, dim=-1).to(self.model.dtype)
        if not sdxl:
            return Conditioning(h)
        return Conditioning(h, pooled.to(self.model.dtype))

    def _encode_chunk(self, tokenizer, encoder, chunk: PromptChunk, sdxl: bool):
        pad = tokenizer.pad_token_id
        ids = chunk.padded_with(pad) if pad != tokenizer.eos_token_id else chunk.ids
        ids = torch.tensor([ids], device=self.model.device)
        with _embedding_vectors(encoder, chunk):
            out = encoder(ids, output_hidden_states=True)
        if sdxl:
            z = out.hidden_states[-(self.clip_skip + 1)]
        elif self.clip_skip == 1:
            z = out.last_hidden_state
        else:
            z = _final_layer_norm(encoder)(out.hidden_states[-self.clip_skip])
        pooled = out[0] if sdxl and out[0].ndim == 2 else None
        return self._emphasis(z, chunk.weights), pooled

    def _emphasis(self, z: torch.Tensor, weights: list[float]) -> torch.Tensor:
        if self.emphasis in ("Ignore", "None") or all(w == 1.0 for w in weights):
            return z
        w = torch.tensor(weights, dtype=z.dtype, device=z.device)[None, :, None]
        before = z.mean()
        z = z * w
        if self.emphasis == "Original":
            z = z * (before / z.mean())
        return z

    def empty_chunk(self) -> Conditioning:
        """The encoding of one empty chunk: what shorter conditionings are padded with."""
        return self.encode("")


@contextmanager
def _embedding_vectors(encoder, chunk: PromptChunk):
    """While encoding ``chunk``, put textual-inversion vectors where its placeholder ids are
    (A1111 does this in its token-embedding hook too)."""
    if not chunk.fixes:
        yield
        return

    def put(module, inputs, output):
        output = output.clone()
        for fix in chunk.fixes:
            vectors = fix.embedding.to(output.dtype)
            output[0, fix.offset + 1 : fix.offset + 1 + len(vectors)] = vectors
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(put)
    try:
        yield
    finally:
        handle.remove()


def _final_layer_norm(encoder):
    # transformers 5 keeps it on the model itself, earlier versions on `.text_model`
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm
