"""An idea ("a castle") made into a detailed prompt and a negative prompt by a language model.

The LLM (:mod:`gouache.prompts.llm`: an OpenAI-compatible endpoint or a local transformers folder)
gets one user message: a template with the idea in it. :data:`DEFAULT_TEMPLATE` asks for a JSON
object ``{"prompt": …, "negative_prompt": …}``; a template of your own is any UTF-8 text with
``{idea}`` where the idea goes (nothing else in it is special: braces are kept as they are).

Replies are read by :func:`parse_reply`, which takes what chat models really send: the JSON object
alone, in a code fence or among prose, a reasoning model's ``<think>…</think>`` before it, or two
labelled lines ``Prompt: …`` / ``Negative prompt: …`` (markdown bold and list marks allowed). It
reads the text once from left to right, with no backtracking regex, so a long reply costs linear
time. A reply without a prompt is one :class:`~gouache.prompts.llm.LLMReplyError` that shows how
it began.

>>> parse_reply('Sure! ```json\\n{"prompt": "a stone castle on a hill, dusk", "negative_prompt": "blurry"}\\n```')
('a stone castle on a hill, dusk', 'blurry')
>>> parse_reply("**Prompt:** a red circle, flat colours\\n**Negative prompt:** text, watermark")
('a red circle, flat colours', 'text, watermark')
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gouache.errors import InvalidArgument
from gouache.prompts.llm import LLMReplyError, LLMSettings, open_llm

PLACEHOLDER = "{idea}"
MAX_IDEA_CHARS = 2000
MAX_TEMPLATE_CHARS = 20_000
MAX_REPLY_CHARS = 50_000  # read of a reply; max_tokens keeps real ones far shorter
JSON_TRIES = 32  # objects tried in one reply: each try reads on from its "{", so the whole read stays linear
PROMPT_KEYS = ("prompt", "positive_prompt", "positive prompt", "positive")
NEGATIVE_KEYS = ("negative_prompt", "negative prompt", "negative")

DEFAULT_TEMPLATE = """\
You write prompts for Stable Diffusion, a text-to-image model.

Turn this idea into a detailed prompt: {idea}

The prompt names the subject first, then its details, the setting, the lighting, the colours, the \
composition and the style or medium, as short phrases separated by commas (at most 60 words, in \
English). Keep everything the idea says and add nothing that contradicts it.
The negative prompt lists what the image should not show, as short phrases separated by commas \
(for example: blurry, low quality, watermark, text, deformed).

Answer with one JSON object and nothing else:
{"prompt": "...", "negative_prompt": "..."}
"""


@dataclass(frozen=True)
class ExpandedPrompt:
    """What :func:`expand_prompt` gives: the prompt and negative prompt to generate with, and the
    idea they came from (recorded in the infotext as ``Prompt idea``)."""

    prompt: str
    negative_prompt: str
    idea: str


def expand_prompt(idea: str, llm=None, *, model: str | None = None, template: str | None = None,
                  timeout: float = 60.0, max_tokens: int = 300, device: str = "cpu",
                  label: str | None = None) -> ExpandedPrompt:
    """A detailed prompt and a negative prompt for ``idea``, written by ``llm``: an endpoint URL
    (``http://127.0.0.1:8080``), a causal-LM folder or a name under ``$GOUACHE_HOME/llm``, an LLM
    opened with :func:`gouache.prompts.llm.open_llm`, or None for ``$GOUACHE_LLM``. ``model`` is
    the endpoint's model name; ``template`` the text of a template with ``{idea}`` (None: the
    default). At most ``timeout`` seconds and ``max_tokens`` new tokens; ``label`` is how messages
    call the LLM (default: by its URL or folder).

    >>> x = expand_prompt("a castle", llm="http://127.0.0.1:8080")                  # doctest: +SKIP
    >>> x.prompt                                                                      # doctest: +SKIP
    'a medieval stone castle on a cliff, towers and banners, golden hour light, ...'
    >>> gouache.txt2img(x.prompt, negative_prompt=x.negative_prompt, prompt_idea=x.idea)  # doctest: +SKIP
    """
    idea = check_idea(idea)
    message = fill_template(template if template is not None else DEFAULT_TEMPLATE, idea)
    if hasattr(llm, "chat"):
        reply = llm.chat([{"role": "user", "content": message}])
    else:
        settings = LLMSettings(llm, model, timeout, max_tokens, device)
        with open_llm(settings, label) as opened:
            reply = opened.chat([{"role": "user", "content": message}])
    prompt, negative = parse_reply(reply)
    return ExpandedPrompt(prompt, negative, idea)


def check_idea(idea) -> str:
    """``idea`` stripped, if it is text of 1 to :data:`MAX_IDEA_CHARS` characters."""
    if not isinstance(idea, str):
        raise InvalidArgument(f"`idea` must be text, got {type(idea).__name__}")
    idea = idea.strip()
    if not idea:
        raise InvalidArgument("`idea` is empty: say in a few words what to draw, e.g. \"a castle\"")
    if len(idea) > MAX_IDEA_CHARS:
        raise InvalidArgument(f"`idea` is {len(idea)} characters, over {MAX_IDEA_CHARS}: an idea is a few words "
                              "that the LLM makes into a prompt")
    return idea


def fill_template(template: str, idea: str) -> str:
    """``template`` with each ``{idea}`` replaced (``str.replace``: other braces stay as written)."""
    if not isinstance(template, str) or PLACEHOLDER not in template:
        raise InvalidArgument(f"the template has no {PLACEHOLDER} placeholder: write {PLACEHOLDER} where the "
                              "idea goes, e.g. \"Describe {idea} as a Stable Diffusion prompt\"")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidArgument(f"the template is {len(template)} characters, over {MAX_TEMPLATE_CHARS}")
    return template.replace(PLACEHOLDER, idea)


def read_template(path: str | os.PathLike) -> str:
    """A template file's text (UTF-8), checked for its ``{idea}``."""
    path = Path(path).expanduser()
    try:
        if path.stat().st_size > 4 * MAX_TEMPLATE_CHARS:
            raise InvalidArgument(f"--template {path}: over {MAX_TEMPLATE_CHARS} characters")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"--template {path}: cannot be read: {getattr(err, 'strerror', None) or err}") from None
    try:
        fill_template(text, "")
    except InvalidArgument as err:
        raise InvalidArgument(f"--template {path}: {err}") from None
    return text


# -- reading a reply --------------------------------------------------------------------------------


def parse_reply(reply: str) -> tuple[str, str]:
    """``(prompt, negative prompt)`` from an LLM's reply (see the module docstring); the negative
    prompt may be empty, the prompt may not."""
    text = reply[:MAX_REPLY_CHARS] if isinstance(reply, str) else ""
    head, end, tail = text.rpartition("</think>")  # a reasoning model's thoughts come first
    if end:
        text = tail
    found = _from_json(text) or _from_lines(text)
    if found is None or not found[0]:
        shown = " ".join(text[:400].split())[:120]
        raise LLMReplyError("the LLM's reply has no prompt: expected a JSON object {\"prompt\": …, "
                            "\"negative_prompt\": …} or a line \"Prompt: …\"; it began "
                            f"{shown!r}{' (empty)' if not shown else ''}")
    return found


def _from_json(text: str) -> tuple[str, str] | None:
    """The first JSON object with a prompt key, among the first :data:`JSON_TRIES` ``{`` of ``text``."""
    decoder = json.JSONDecoder()
    at = text.find("{")
    for _ in range(JSON_TRIES):
        if at < 0:
            return None
        try:
            value, end = decoder.raw_decode(text, at)
        except (json.JSONDecodeError, RecursionError):
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            found = _from_mapping(value)
            if found is not None:
                return found
        at = text.find("{", end)
    return None


def _from_mapping(value: dict) -> tuple[str, str] | None:
    keys = {str(k).strip().lower(): v for k, v in value.items()}
    prompt = next((keys[k] for k in PROMPT_KEYS if k in keys), None)
    if not isinstance(prompt, (str, list)):
        # one level down: {"result": {"prompt": …}}
        return next((found for v in value.values() if isinstance(v, dict)
                     for found in [_from_mapping(v)] if found is not None), None)
    negative = next((keys[k] for k in NEGATIVE_KEYS if k in keys), "")
    return _clean(prompt), _clean(negative)


def _clean(value) -> str:
    """One line of prompt text: a list joined with commas (some models answer with tags), whitespace
    runs made one space, wrapping quotes and backticks taken off."""
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if isinstance(v, (str, int, float)))
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def _from_lines(text: str) -> tuple[str, str] | None:
    """``Prompt: …`` and ``Negative prompt: …`` lines; a label alone on its line takes the next line."""
    found: dict[str, str] = {}
    waiting = None  # a label whose value is on the next non-empty line
    for line in text.splitlines():
        label, value = _labelled(line)
        if label is None:
            if waiting and line.strip() and not line.strip().startswith("```"):
                found[waiting], waiting = _clean(line.strip().strip("*_").strip()), None
            continue
        if label in found:
            continue  # the first of each label counts (a model may repeat itself)
        if value:
            found[label], waiting = value, None
        else:
            waiting = label
    if "prompt" not in found:
        return None
    return found["prompt"], found.get("negative", "")


def _labelled(line: str) -> tuple[str | None, str]:
    """``("prompt" | "negative", value)`` of a labelled line, else ``(None, "")``. Markdown around
    the label (``**Prompt:**``, ``- Prompt:``, ``### Prompt:``) is allowed."""
    head, colon, rest = line.partition(":")
    if not colon or len(head) > 40:
        return None, ""
    name = head.strip().strip("*_#->`").strip().lower()
    value = _clean(rest.strip().lstrip("*_").strip())
    if name in ("negative prompt", "negative_prompt", "negative"):
        return "negative", value
    if name in ("prompt", "positive prompt", "positive_prompt", "positive"):
        return "prompt", value
    return None, ""
