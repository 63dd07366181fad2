"""Compel's prompt syntax (damian0815/compel) as another way to make the same :class:`Conditioning`.

``prompt_syntax="compel"`` reads a prompt with the ``compel`` library instead of A1111's grammar::

    ("a red circle on a blue background", "a yellow circle on a blue background").blend(0.7, 0.3)
    a red++ circle          a red-- circle          a (red circle)1.3
    ("a red circle", "on a blue background").and()

compel tokenizes and runs the model's own text encoder(s) (SD 1.x/2.x: the last layer, or the
penultimate through the final norm for Clip skip 2; SDXL: the penultimate layer of both encoders
and the pooled projection of the second, compel's ``ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED``
with the pooled output of the second only). The result is one :class:`Conditioning` per prompt,
so the denoising loop, CFG, the hires fix and the refiner take it as they take A1111's.

What combines with it, and what does not (docs/compel.md):

- ``<lora:name:0.8>`` tags are taken out first, as under A1111's grammar, and switch LoRAs on.
- A1111's ``AND``, ``[a:b:0.5]`` scheduling, ``[a|b]`` alternation, ``(word:1.2)`` and ``BREAK``
  are not compel's: compel reads them as plain text. Its own ``.and()`` joins prompts along the
  token axis, ``.blend()`` mixes their conditionings.
- compel's ``.swap()`` (cross-attention control) and ``withLora()`` are refused with a message, as
  are textual-inversion embedding names (compel would read them as words).

compel's parser (pyparsing) backtracks exponentially in the nesting of parentheses: ``(((((a``
takes 2 s, each level about 4 times more. Its grammar is parsed here with pyparsing's packrat memo switched
on (linear in practice), nesting is capped at :data:`MAX_NESTING`, and the encoder passes a prompt
asks for (each ``.blend()`` part, each down-weighted word) at :data:`MAX_ENCODER_PASSES`.

>>> check_syntax('("a cat", "a dog").blend(0.7, 0.3)')   # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch

from gouache.errors import InvalidArgument
from gouache.prompts.compose import extract_extra_networks
from gouache.prompts.conditioning import Conditioning, ConditioningAt, pad_conditionings

PROMPT_SYNTAXES = ("a1111", "compel")  # "a1111": gouache.prompts, the default
INSTALL_HINT = "pip install 'gouache[compel]' (or: pip install compel)"
MAX_NESTING = 10  # parentheses within parentheses; compel's own examples use 2 or 3
MAX_ENCODER_PASSES = 64  # text-encoder runs per prompt: one per blend part and per down-weighted word


def check_installed() -> None:
    """Raise :class:`InvalidArgument` with the install command unless compel can be imported."""
    if importlib.util.find_spec("compel") is None:
        raise InvalidArgument(f"`prompt_syntax` 'compel' needs the compel library, which is not installed: {INSTALL_HINT}")


def check_syntax(prompt: str, name: str = "prompt"):
    """The prompt as compel parses it (a ``compel.prompt_parser.Conjunction``), extra-network tags
    taken out; malformed syntax, or what gouache does not do with compel, is one
    :class:`InvalidArgument` naming ``name``."""
    check_installed()
    text, _ = extract_extra_networks(prompt)
    _check_nesting(text, name)
    conjunction = _parse(text, name)
    passes = 0
    for part in conjunction.prompts:
        flats = part.prompts if type(part).__name__ == "Blend" else [part]
        for flat in flats:
            if flat.wants_cross_attention_control:
                raise InvalidArgument(f"`{name}` uses compel's .swap() (cross-attention control), which gouache does "
                                      "not do; blend the two prompts instead, e.g. (\"a cat\", \"a dog\").blend(0.5, 0.5)")
            passes += 1 + sum(1 for f in flat.children if f.weight < 1)
    if conjunction.lora_weights:
        raise InvalidArgument(f"`{name}` uses compel's withLora()/useLora(); write gouache's LoRA tag instead, "
                              "e.g. <lora:name:0.8>")
    if passes > MAX_ENCODER_PASSES:
        raise InvalidArgument(f"`{name}` asks for {passes} text-encoder passes (one per .blend() part and per "
                              f"down-weighted word), over the limit of {MAX_ENCODER_PASSES}; use fewer")
    return conjunction


def _check_nesting(text: str, name: str) -> None:
    """Linear pre-check: compel's parser is exponential in the depth of parentheses."""
    depth = deepest = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(depth - 1, 0)
    if deepest > MAX_NESTING:
        raise InvalidArgument(f"`{name}` nests parentheses {deepest} deep; compel syntax allows {MAX_NESTING} "
                              "(close the ones you opened, or write a literal one as \\( )")


def _parse(text: str, name: str):
    import pyparsing

    from compel.prompt_parser import PromptParser

    # Packrat memoizes pyparsing's backtracking (it is process-wide, and only changes speed);
    # without it compel's grammar takes seconds at 5 levels of parentheses.
    pyparsing.ParserElement.enable_packrat()
    try:
        return PromptParser().parse_conjunction(text)
    except pyparsing.ParseBaseException as err:
        raise InvalidArgument(f"`{name}` is not valid compel syntax: {err.msg} at column {err.col} "
                              f"(near {text[max(err.loc - 20, 0):err.loc + 20]!r}); see docs/compel.md") from None
    except PromptParser.ParsingException as err:
        reason = _short(err).split(" [", 1)[0]  # compel appends its parse tree
        raise InvalidArgument(f"`{name}` is not valid compel syntax: {reason}; e.g. "
                              "(\"a cat\", \"a dog\").blend(0.7, 0.3) has one weight per prompt") from None
    except ValueError as err:  # a weight that is no number: .blend(x)
        raise InvalidArgument(f"`{name}` is not valid compel syntax: {_short(err)}; weights are numbers, "
                              "e.g. .blend(0.7, 0.3)") from None
    except RecursionError:
        raise InvalidArgument(f"`{name}` nests too deeply for compel's parser; simplify it") from None


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= 160 else text[:160] + "..."


class _TextModelShim:
    """compel 2.5 finds the final layer norm at ``encoder.text_model.final_layer_norm`` (Clip skip 2);
    transformers 5 keeps it on the encoder itself. Everything else goes to the encoder."""

    def __init__(self, encoder):
        self._encoder = encoder

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def __call__(self, *args, **kwargs):
        return self._encoder(*args, **kwargs)

    @property
    def text_model(self):
        return self._encoder


@dataclass
class CompelEncoder:
    """Encodes compel-syntax texts for one loaded model (``gouache.pipelines.model.LoadedModel``),
    with a cache; the counterpart of :class:`gouache.prompts.encode.PromptEncoder`.

    ``embeddings`` (an ``EmbeddingLibrary``) is only read to refuse prompts that name one.
    """

    model: object
    clip_skip: int = 1
    embeddings: object = None
    cache: dict[str, Conditioning] = field(default_factory=dict)
    _compels: list | None = None

    def __post_init__(self) -> None:
        check_installed()
        most = 1 if self.model.is_sdxl else 2
        if isinstance(self.clip_skip, bool) or self.clip_skip not in range(1, most + 1):
            which = "SDXL takes only 1" if self.model.is_sdxl else "SD 1.x/2.x take 1 or 2"
            raise InvalidArgument(f"`clip_skip` {self.clip_skip!r} is not available with compel syntax ({which}); "
                                  "use prompt_syntax 'a1111' for more")

    def compels(self) -> list:
        """One ``compel.Compel`` per text encoder, as compel's ``CompelForSD``/``CompelForSDXL`` build them."""
        if self._compels is None:
            from compel import Compel, ReturnedEmbeddingsType

            p, sdxl = self.model.pipeline, self.model.is_sdxl
            pairs = [(p.tokenizer, p.text_encoder)] + ([(p.tokenizer_2, p.text_encoder_2)] if sdxl else [])
            kind = (ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED if sdxl else
                    ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED if self.clip_skip == 1 else
                    ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED)
            self._compels = [
                Compel(tokenizer=t, text_encoder=e if hasattr(e, "text_model") else _TextModelShim(e),
                       returned_embeddings_type=kind, truncate_long_prompts=False,
                       requires_pooled=sdxl and k == 1)  # SDXL: the pooled output of the second encoder
                for k, (t, e) in enumerate(pairs)
            ]
        return self._compels

    @torch.no_grad()
    def encode(self, text: str, name: str = "prompt") -> Conditioning:
        """The conditioning of one compel-syntax text, batch size 1 (``<lora:...>`` tags taken out)."""
        if text not in self.cache:
            check_syntax(text, name)
            plain, _ = extract_extra_networks(text)
            self._check_embeddings(plain, name)
            self.cache[text] = self._encode(plain)
        return self.cache[text]

    def _encode(self, text: str) -> Conditioning:
        hidden, pooled = [], None
        for compel in self.compels():
            out = compel.build_conditioning_tensor(text)
            if compel.requires_pooled:
                out, pooled = out
            hidden.append(out)
        h = torch.cat(hidden, dim=-1).to(self.model.dtype)
        return Conditioning(h, None if pooled is None else pooled.to(self.model.dtype))

    def empty_chunk(self) -> Conditioning:
        """One chunk of the empty text, what compel pads shorter conditionings with."""
        if "" not in self.cache:
            hidden = torch.cat([c.conditioning_provider.empty_z for c in self.compels()], dim=-1)
            self.cache[""] = Conditioning(hidden.to(self.model.dtype))
        return self.cache[""]

    def _check_embeddings(self, text: str, name: str) -> None:
        if self.embeddings is None or not getattr(self.embeddings, "paths", None):
            return
        p = self.model.pipeline
        lookup = self.embeddings.lookup(p.tokenizer, p.text_encoder.config.hidden_size)
        ids = p.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        before = set(self.embeddings.used)
        for i in range(len(ids)):
            if lookup(ids, i) is not None:
                found = sorted(set(self.embeddings.used) - before) or sorted(self.embeddings.used)
                raise InvalidArgument(f"`{name}` names the textual-inversion embedding {found[0]!r}, which compel "
                                      "syntax does not use; use prompt_syntax 'a1111' for embeddings")


def compel_schedule(encoder: CompelEncoder, prompt: str, negative_prompt: str,
                    time_ids: torch.Tensor | None = None) -> ConditioningAt:
    """``prompt`` and ``negative_prompt`` read with compel, as the denoiser asks for them: the same
    at every step (compel has no schedules), one prompt part of weight 1, both padded to the same
    number of 77-token chunks. The counterpart of :func:`gouache.prompts.conditioning.conditioning_schedule`."""
    cond = encoder.encode(prompt, "prompt")
    uncond = encoder.encode(negative_prompt, "negative_prompt")
    uncond, cond = (Conditioning(c.hidden, c.pooled, time_ids)
                    for c in pad_conditionings([uncond, cond], encoder.empty_chunk()))

    def at(step: int):
        return [(cond, 1.0)], uncond

    return at
