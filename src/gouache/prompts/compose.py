"""The two things A1111 cuts out of a prompt before scheduling: ``<kind:args>`` tags and ``AND``.

A1111's order for each prompt (``processing.process_images_inner``) is: remove extra-network tags
(:func:`extract_extra_networks`), split on ``AND`` (:func:`split_and`), then schedule each part
(:func:`gouache.prompts.schedules`). Both steps are plain regular expressions that know nothing of
brackets: a tag inside ``[a:<lora:x>:5]`` is removed all the same, and ``[a AND b:5]`` is split in
the middle, leaving two halves that are no longer a schedule. That is A1111's behaviour too.

>>> text, nets = extract_extra_networks("a cat <lora:fur:0.8> AND a dog:0.5")
>>> split_and(text)
[('a cat', 1.0), (' a dog', 0.5)]
>>> nets[0].kind, nets[0].name, lora_multipliers(nets[0])
('lora', 'fur', LoraMultipliers(te=0.8, unet=0.8, dyn=None))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from gouache.errors import InvalidArgument

# A1111's regexes (modules/prompt_parser.py, modules/extra_networks.py): these are the behaviour
# to match, down to which whitespace stays with which part. A1111 reads a part's weight with
#     ^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$
# which `re` runs in quadratic time on a long run of spaces; _part_weight gives the same answer.
_AND = re.compile(r"\bAND\b")
_WEIGHT_AFTER_COLON = re.compile(r"\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*")
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """The parts of an ``AND`` prompt with their weights (composable diffusion), as A1111 splits them.

    ``AND`` must be a whole word in capitals. A part may end in ``:weight`` (default 1.0); the
    weight and the part's trailing whitespace are removed, leading whitespace stays. Sampling then
    combines ``uncond + sum_i (cond_i - uncond) * weight_i * cfg_scale``.

    >>> split_and("a red ball AND a blue cube :1.5")
    [('a red ball', 1.0), (' a blue cube', 1.5)]
    >>> split_and("ANDROID (cat:1.2)")
    [('ANDROID (cat:1.2)', 1.0)]
    """
    parts = []
    for part in _AND.split(prompt):
        text, weight = _part_weight(part)
        if not math.isfinite(weight):
            raise InvalidArgument(
                f"the AND part {text!r:.60} has the weight {weight}; write a number like `a cat :0.5`."
            )
        parts.append((text, weight))
    return parts


def _part_weight(part: str) -> tuple[str, float]:
    """A1111's regex on one part, in linear time: the weight is the number after the last ``:``
    (only whitespace around it), and goes with the whitespace before the ``:``; without one,
    the trailing whitespace goes."""
    colon = part.rfind(":")
    if colon != -1:
        number = _WEIGHT_AFTER_COLON.fullmatch(part, colon + 1)
        if number is not None:
            return part[:colon].rstrip(), float(number.group(1))  # str.isspace() is `\s`
    return part.rstrip(), 1.0


@dataclass
class ExtraNetwork:
    """One ``<kind:name:arg:...>`` tag, e.g. ``<lora:fur:0.8>`` -> kind "lora", name "fur", args ["0.8"].

    The text after ``kind:`` is split on every ``:``, like A1111's ``ExtraNetworkParams``; the
    first piece is ``name``, the rest ``args``, all verbatim strings.
    """

    kind: str
    name: str
    args: list[str] = field(default_factory=list)

    @property
    def items(self) -> list[str]:
        """All pieces, name first: A1111's ``ExtraNetworkParams.items``."""
        return [self.name, *self.args]

    @property
    def positional(self) -> list[str]:
        """Pieces without ``key=value`` (A1111 splits on ``=`` at most twice, so ``a=b=c`` is positional)."""
        return [item for item in self.items if len(item.split("=", 2)) != 2]

    @property
    def named(self) -> dict[str, str]:
        """``key=value`` pieces, e.g. ``{"te": "0.5"}`` for ``<lora:x:te=0.5>``; a later key wins."""
        return dict(item.split("=", 2) for item in self.items if len(item.split("=", 2)) == 2)

    def tag(self) -> str:
        """The tag as written in a prompt.

        >>> ExtraNetwork("lora", "fur", ["0.8"]).tag()
        '<lora:fur:0.8>'
        """
        return f"<{self.kind}:{':'.join(self.items)}>"


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetwork]]:
    """Remove every ``<kind:args>`` tag from ``prompt``; return the rest and the tags in order.

    The tag is removed and nothing else: the commas and spaces around it stay, as in A1111.
    Any ``kind`` is accepted (lora, hypernet, lyco, ...); deciding what it means is the caller's job.

    >>> text, networks = extract_extra_networks("a cat, <lora:fur:0.8>, <hypernet:ink>")
    >>> text
    'a cat, , '
    >>> [(network.kind, network.name, network.args) for network in networks]
    [('lora', 'fur', ['0.8']), ('hypernet', 'ink', [])]
    """
    found: list[ExtraNetwork] = []

    def remove(match: re.Match) -> str:
        name, *args = match.group(2).split(":")
        found.append(ExtraNetwork(match.group(1), name, args))
        return ""

    # A tag ends at a ">": past the last one none can, and the regex would scan to the end of the
    # text from every "<kind:" there, quadratic in a long run of them.
    end = prompt.rfind(">") + 1
    return _EXTRA_NETWORK.sub(remove, prompt[:end]) + prompt[end:], found


@dataclass(frozen=True)
class LoraMultipliers:
    """How strongly a LoRA applies to the text encoder(s) and to the UNet; ``dyn`` limits its rank."""

    te: float
    unet: float
    dyn: int | None = None


def lora_multipliers(network: ExtraNetwork) -> LoraMultipliers:
    """The multipliers of a ``<lora:...>`` tag, by the rules of A1111's built-in Lora extension.

    ``<lora:name:TE:UNET:DYN>``: the first number is the **text-encoder** multiplier (default 1.0),
    the second the **UNet** multiplier (default: the text-encoder one), the third ``dyn`` (an int).
    Named ``te=``, ``unet=`` and ``dyn=`` override the positions. The reference we follow says only
    that tags are split on ``:``; this order is read from A1111's
    ``extensions-builtin/Lora/extra_networks_lora.py`` (``ExtraNetworkLora.activate``), which is
    what written prompts and infotexts assume. Positions count among the non-``key=value`` pieces,
    name included, exactly as A1111 counts them.

    >>> lora_multipliers(ExtraNetwork("lora", "fur"))
    LoraMultipliers(te=1.0, unet=1.0, dyn=None)
    >>> lora_multipliers(ExtraNetwork("lora", "fur", ["0.8", "0.5"]))
    LoraMultipliers(te=0.8, unet=0.5, dyn=None)
    >>> lora_multipliers(ExtraNetwork("lora", "fur", ["0.8", "unet=0.2", "dyn=16"]))
    LoraMultipliers(te=0.8, unet=0.2, dyn=16)
    """
    positional, named = network.positional, network.named
    te = _number(network, "te", named.get("te", positional[1] if len(positional) > 1 else 1.0), float)
    unet = _number(network, "unet", named.get("unet", positional[2] if len(positional) > 2 else te), float)
    dyn = named.get("dyn", positional[3] if len(positional) > 3 else None)
    return LoraMultipliers(te, unet, None if dyn is None else _number(network, "dyn", dyn, int))


def _number(network: ExtraNetwork, what: str, value, kind):
    try:
        number = kind(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    except ValueError:  # also int() of more than 4,300 digits
        example = "<lora:name:0.8:0.5:16> or <lora:name:dyn=16>" if kind is int else "<lora:name:0.8>"
        tag, shown = network.tag(), repr(value) if len(str(value)) <= 40 else f"{str(value)[:40]!r}..."
        raise InvalidArgument(
            f"{tag if len(tag) <= 80 else tag[:80] + '...'}: the {what} value must be "
            f"{'a whole number' if kind is int else 'a number'}, but is {shown}; write it like {example}."
        ) from None
