"""Captioning models: image in, one sentence out, from any local model of the families users have.

A captioner is a folder as ``save_pretrained`` writes it (``config.json``, the weights — ``.safetensors``
first, as transformers prefers — and the processor's files), loaded offline with transformers' own
classes. Its family comes from ``config.json``'s ``model_type`` (:data:`FAMILIES`): BLIP, BLIP-2,
LLaVA 1.5 and LLaVA-NeXT by name, and any other model transformers loads with
``AutoModelForImageTextToText``.

Names (:func:`resolve_captioner`): a folder under ``$GOUACHE_HOME/captioners/`` by its path relative
to that folder (``blip`` for ``captioners/blip/``), any existing path, or the built-in
``gouache-tiny-captioner``; no name means the built-in. The rule is gouache's one rule for names
(:mod:`gouache.models.names`).

>>> with load_captioner("blip") as captioner:                      # doctest: +SKIP
...     captioner.caption([Image.open("cat.jpg")])
['a cat sitting on a couch']
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from gouache.errors import InvalidArgument, ModelLoadError, check_int
from gouache.models.home import models_dir
from gouache.models.names import Names
from gouache.vision.folders import Released

BUILTIN = "gouache-tiny-captioner"
DEFAULT_PROMPT = "Describe this image in one sentence."
PLAIN_CHAT = "USER: {image}\n{prompt} ASSISTANT:"  # LLaVA 1.5's prompt, for processors without a chat template
RERANK_BEAMS = 4  # beam candidates the CLIP picks from (caption(rerank=...))
MAX_NEW_TOKENS = 1024


@dataclass(frozen=True)
class Family:
    """How one family of captioners is loaded and prompted."""

    label: str  # how messages name it
    model_class: str  # a class of transformers
    processor_class: str
    chat: bool  # the prompt is an instruction in a chat turn (else an optional caption prefix)


FAMILIES = {
    "blip": Family("BLIP", "BlipForConditionalGeneration", "BlipProcessor", chat=False),
    "blip-2": Family("BLIP-2", "Blip2ForConditionalGeneration", "Blip2Processor", chat=False),
    "llava": Family("LLaVA 1.5", "LlavaForConditionalGeneration", "LlavaProcessor", chat=True),
    "llava_next": Family("LLaVA-NeXT", "LlavaNextForConditionalGeneration", "LlavaNextProcessor", chat=True),
}
# any other model_type transformers maps to an image-text-to-text model
FALLBACK = Family("image-text-to-text", "AutoModelForImageTextToText", "AutoProcessor", chat=True)


def family_of(folder: Path) -> Family:
    """The :class:`Family` of the model in ``folder``, from its ``config.json``'s ``model_type``.

    Raises ModelLoadError naming the folder when it holds no readable config, and naming the
    supported families when its model is of none of them.
    """
    config = folder / "config.json"
    if not config.is_file():
        raise ModelLoadError(f"{folder} is not a captioning model (no config.json); give a folder written by "
                             "save_pretrained, e.g. a download of Salesforce/blip-image-captioning-base")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise ModelLoadError(f"{config} is not a readable JSON model config") from None
    if kind in FAMILIES:
        return FAMILIES[kind]
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if kind in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return FALLBACK
    known = ", ".join(f"{f.label} ({k})" for k, f in FAMILIES.items())
    raise ModelLoadError(f"{folder} holds a {kind!r} model, not a captioner; supported families: {known}, "
                         "and any model transformers loads as image-text-to-text")


# --------------------------------------------------------------------------------------------
# names


@dataclass(frozen=True)
class CaptionerEntry:
    name: str
    path: Path
    kind: str  # "builtin" or "folder"


def builtin_folder() -> Path:
    """Where the built-in captioner's weights ship: ``gouache/models/weights/captioner/gouache-tiny-captioner``."""
    from gouache.models.builtin import weights_dir

    return weights_dir() / "captioner" / BUILTIN


def rerank_clip(captioner: str | None, rerank: str | None) -> str | None:
    """The CLIP that picks the captions: ``--rerank`` as given (``none``: no CLIP); by default the
    built-in CLIP for the built-in captioner (they read the same world: 89 % of gouache-tiny's
    held-out generations captioned exactly, against 77 % greedy), none for any other."""
    if rerank is not None:
        return None if rerank.strip().lower() == "none" else rerank
    return "gouache-tiny-clip" if captioner is None else None


def captioners_dir() -> Path:
    """``$GOUACHE_HOME/captioners``: one folder per captioning model."""
    return models_dir("captioners")


def list_captioners() -> list[CaptionerEntry]:
    """The built-in captioner (when installed), then every model folder under ``captioners/`` by name."""
    found = [CaptionerEntry(BUILTIN, builtin_folder(), "builtin")] if _is_model(builtin_folder()) else []
    root = captioners_dir()
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        folder = Path(dirpath)
        if folder != root and _is_model(folder):
            found.append(CaptionerEntry(folder.relative_to(root).as_posix(), folder, "folder"))
            dirnames.clear()
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found


def _is_model(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def resolve_captioner(name_or_path: str | os.PathLike | None = None) -> CaptionerEntry:
    """The captioner a name or path means; None is the built-in, which raises ModelLoadError when it
    is not installed. Unknown names list the installed ones."""
    if name_or_path is None:
        if not _is_model(builtin_folder()):
            raise ModelLoadError(f"the built-in captioner {BUILTIN} is not installed; pass `name_or_path`: "
                                 f"a model folder in {captioners_dir()} or a path")
        return CaptionerEntry(BUILTIN, builtin_folder(), "builtin")
    text = str(name_or_path).strip()
    if not text:
        raise InvalidArgument("a captioner name is empty; give a folder name in $GOUACHE_HOME/captioners or a path")
    names = Names("captioner", (list_captioners(),), lambda e: ((e.name,), (e.path.name,)), lambda e: e.name)
    hint = f". Put captioning model folders in {captioners_dir()}/NAME (or set GOUACHE_HOME), or pass a path"
    return names.resolve(text, _entry_for_path, (), hint)


def _entry_for_path(path: Path) -> CaptionerEntry:
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file, not a captioning model; give the model's folder "
                             "(config.json, weights and processor files, as save_pretrained writes them)")
    return CaptionerEntry(path.name, path, "folder")


# --------------------------------------------------------------------------------------------
# loading and captioning


def load_captioner(name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> "Captioner":
    """Load a captioner (see the module doc for names) offline onto ``device``, in float32 on the CPU
    and float16 on a GPU.

    Raises UnknownName for a name nothing answers to, ModelLoadError for a folder that is not a
    loadable captioning model (naming it), InvalidArgument for a device torch does not know.
    """
    import torch

    entry = resolve_captioner(name_or_path)
    family = family_of(entry.path)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgument(f"unknown device {device!r}; use cpu, cuda, cuda:1 or mps") from None
    dtype = torch.float32 if dev.type == "cpu" else torch.float16
    model, processor = _from_pretrained(entry.path, family, dtype)
    try:
        model.to(dev).eval()
    except (RuntimeError, AssertionError) as err:
        raise InvalidArgument(f"cannot use device {device!r}: {_first_line(err)}") from None
    return Captioner(entry.name, family, model, processor, dev)


def _from_pretrained(path: Path, family: Family, dtype):
    import transformers

    try:
        processor = getattr(transformers, family.processor_class).from_pretrained(path, local_files_only=True)
        model = getattr(transformers, family.model_class).from_pretrained(path, local_files_only=True, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as err:
        raise ModelLoadError(f"cannot load the {family.label} captioner in {path}: {_first_line(err)}") from None
    return model, processor


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass
class Captioner(Released):
    """A loaded captioning model. Use it in a ``with`` block, or call :meth:`close` when done: the
    model is loaded on demand and released after."""

    name: str
    family: Family
    model: object = field(repr=False)
    processor: object = field(repr=False)
    device: object = "cpu"


    def caption(self, images: list, prompt: str | None = None, max_new_tokens: int = 40, rerank=None,
                beams: int = RERANK_BEAMS) -> list[str]:
        """One caption per image, by greedy decoding (the same images give the same captions).

        ``prompt`` is the instruction of chat models (LLaVA; default :data:`DEFAULT_PROMPT`) and the
        start of the caption for BLIP and BLIP-2 (none unless given). The prompt is not repeated in
        the returned captions. ``rerank``: a loaded :class:`~gouache.vision.clip.Clip`; then each
        image's ``beams`` beam-search candidates are ranked by it and the best match is the caption
        (caption filtering: the captioner proposes, the CLIP picks).
        """
        import torch

        if self.model is None:
            raise InvalidArgument(f"captioner {self.name} is closed; load it again")
        check_int("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
        check_int("beams", beams, 2, 16)
        if not images:
            return []
        prompt = prompt.strip() if prompt and prompt.strip() else None
        inputs = self._inputs(images, prompt).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        k = 1 if rerank is None else beams
        new_tokens = max_new_tokens if rerank is None else min(max_new_tokens, self._room(inputs))
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, num_beams=k,
                                      num_return_sequences=k)
        starts = inputs["input_ids"] if "input_ids" in inputs else [None] * len(images)
        texts = [self._decode(row, starts[i // k], prompt) for i, row in enumerate(ids)]
        if rerank is None:
            return texts
        out = []
        for i, image in enumerate(images):
            candidates = list(dict.fromkeys(t for t in texts[i * k:(i + 1) * k] if t))
            out.append(rerank.rank(image, candidates, top=1)[0][0] if candidates else "")
        return out

    def _room(self, inputs) -> int:
        """New tokens a beam may take before the text decoder runs out of positions (beams that
        have not ended run on to the limit, where greedy decoding has stopped long before)."""
        config = getattr(self.model.config, "text_config", None)
        limit = getattr(config, "max_position_embeddings", None)
        if not limit:
            return MAX_NEW_TOKENS
        used = inputs["input_ids"].shape[1] if "input_ids" in inputs else 1
        return max(1, limit - used - 1)

    def _inputs(self, images: list, prompt: str | None):
        from gouache.images import flatten

        rgb = [flatten(image) for image in images]
        if self.family.chat:
            text = self._chat_prompt(prompt or DEFAULT_PROMPT)
        elif prompt is not None:
            text = prompt
        else:
            return self.processor(images=rgb, return_tensors="pt")
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"  # generation continues every row from its end
        return self.processor(images=rgb, text=[text] * len(rgb), return_tensors="pt", padding=True)

    def _chat_prompt(self, prompt: str) -> str:
        if getattr(self.processor, "chat_template", None):
            turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(turn, add_generation_prompt=True)
        return PLAIN_CHAT.format(image=getattr(self.processor, "image_token", "<image>"), prompt=prompt)

    def _decode(self, row, start, prompt: str | None) -> str:
        if start is not None:
            n = start.shape[0]
            if row.shape[0] >= n and bool((row[:n] == start.to(row.device)).all()):
                row = row[n:]  # decoder-only models return the prompt's tokens first
        text = " ".join(self.processor.batch_decode([row], skip_special_tokens=True)[0].split())
        if prompt and text.casefold().startswith(prompt.casefold()):
            text = text[len(prompt):]  # BLIP's caption starts with its prefix
        return text.strip()
