"""What the server can list and load: checkpoints, samplers, schedule types, LoRAs and embeddings,
in AUTOMATIC1111's response shapes; and the one check every model name from a request goes through.

A name from a request is matched against the models folder's list (the rule of
:mod:`gouache.models.names`), never opened as a path, so no request can reach a file outside
``$GOUACHE_HOME``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from gouache.errors import GouacheError, InvalidArgument
from gouache.models.registry import ModelEntry, list_models, model_name, model_names, model_title

logger = logging.getLogger(__name__)
MAX_NAME_CHARS = 1024
_UNSAFE = re.compile(r"(^|[\\/])\.\.([\\/]|$)|^[\\/~]|^[A-Za-z]:|\\|\x00")


def find_checkpoint(name: str | None, what: str = "sd_model_checkpoint") -> ModelEntry:
    """The listed model a request names: by name, file name, stem, A1111 title or ``model_name``
    (:func:`gouache.models.registry.model_names`).

    >>> find_checkpoint("gouache-tiny").kind
    'builtin'
    >>> find_checkpoint("../../etc/passwd")
    Traceback (most recent call last):
    gouache.errors.InvalidArgument: ...
    """
    if name is None or name == "":
        return list_models()[0]
    if not isinstance(name, str):
        raise InvalidArgument(f"`{what}` must be a model name, got {type(name).__name__}")
    text = name.strip()
    if len(text) > MAX_NAME_CHARS:  # no model has such a name; and the title regex below is not linear
        raise InvalidArgument(f"`{what}` is {len(text)} characters long; name a model from /sdapi/v1/sd-models")
    if _UNSAFE.search(text):
        raise InvalidArgument(f"`{what}` {name!r} is a path; name a model from /sdapi/v1/sd-models")
    return model_names().lookup(text, hint=" (see /sdapi/v1/sd-models)")


def load_path(entry: ModelEntry) -> str | None:
    """What :func:`gouache.load_model` takes for an entry: its absolute path, None for the built-in."""
    return None if entry.kind == "builtin" else str(entry.path)


def title_of(entry: ModelEntry, hashed: bool = True, short_hash: str | None = None) -> str:
    """A1111's title, ``"name [hash]"``, when the hash is known (it is not computed here)."""
    h = short_hash if short_hash is not None else (_cached_hash(entry) if hashed else None)
    return model_title(entry.name, h)


def _cached_hash(entry: ModelEntry) -> str | None:
    """The short hash if already computed (A1111 too lists a checkpoint's hash only once known)."""
    if entry.kind == "builtin":
        from gouache.models.hashing import model_hash

        return model_hash(entry.path)[:10] if entry.path.is_file() else None  # a few MB: cheap
    from gouache.models.hashing import cached_sha256

    try:
        cached = cached_sha256(entry.path)
    except (OSError, ValueError, GouacheError):  # a broken entry is listed without a hash
        return None
    return cached[:10] if cached else None


def sd_models() -> list[dict]:
    """``GET /sdapi/v1/sd-models``: the good checkpoints; one that cannot even be looked at is
    skipped and logged, not a failed listing."""
    out = []
    for e in list_models():
        try:
            _check_readable(e)
            h = _cached_hash(e)
            config = e.path.with_suffix(".yaml") if e.kind == "single-file" else None
            out.append({"title": title_of(e, short_hash=h or ""), "model_name": model_name(e), "hash": h,
                        "sha256": None, "filename": str(e.path),
                        "config": str(config) if config and config.is_file() else None})
        except (OSError, GouacheError) as err:
            logger.warning("gouache: /sd-models skips %s: %s", e.path, err)
    return out


def _check_readable(entry: ModelEntry) -> None:
    """A cheap look at a listed checkpoint (a few bytes, not its weights): raises ModelLoadError
    when it cannot be a model — a diffusers folder whose ``model_index.json`` is not a JSON object, a
    ``.safetensors`` whose header does not fit the file, a ``.ckpt`` that is neither zip nor pickle."""
    import json
    import struct

    from gouache.errors import ModelLoadError

    path = entry.path
    if entry.kind == "builtin":
        return
    if entry.kind == "diffusers":
        try:
            index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelLoadError(f"{path}/model_index.json is not JSON: {err}") from None
        if not isinstance(index, dict) or not (path / "unet").is_dir():
            raise ModelLoadError(f"{path}: model_index.json is not a diffusers pipeline's, or unet/ is missing")
        return
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if path.suffix.lower() == ".safetensors":
        if len(head) < 9 or not 2 <= struct.unpack("<Q", head[:8])[0] <= size - 8 or head[8:9] != b"{":
            raise ModelLoadError(f"{path}: not a safetensors file (its header does not fit)")
    elif not (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise ModelLoadError(f"{path}: neither a zip nor a pickle checkpoint")


def samplers() -> list[dict]:
    """``GET /sdapi/v1/samplers``: A1111's names, ComfyUI/k-diffusion aliases, the diffusers class."""
    from gouache.sampling.samplers import SAMPLERS

    return [{"name": s.name, "aliases": list(s.aliases), "options": {"scheduler": s.scheduler}} for s in SAMPLERS.values()]


def schedulers() -> list[dict]:
    """``GET /sdapi/v1/schedulers``."""
    from gouache.sampling.samplers import SCHEDULES

    return [{"name": k.lower().replace(" ", "_"), "label": k, "aliases": None,
             "default_rho": 7.0 if k == "Karras" else -1, "need_inner_model": False} for k in SCHEDULES]


def loras() -> list[dict]:
    """``GET /sdapi/v1/loras``: ``[{name, alias, path, metadata}]`` of ``$GOUACHE_HOME/lora`` and the
    examples that ship with gouache."""
    from gouache.adapters.lora import list_loras

    return [{"name": name, "alias": name, "path": str(p), "metadata": _safetensors_metadata(p)}
            for name, p in list_loras().items()]


def _safetensors_metadata(path: Path) -> dict:
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - a broken file is listed without metadata, not a failed listing
        return {}


def embeddings() -> dict:
    """``GET /sdapi/v1/embeddings``: ``{"loaded": {name: {...}}, "skipped": {}}``."""
    from gouache.adapters.embeddings import EmbeddingLibrary, read_embedding
    from gouache.errors import GouacheError

    library = EmbeddingLibrary.scan()
    loaded, skipped = {}, {}
    for name in library.names():
        try:
            e = read_embedding(library.paths[name])
        except (GouacheError, OSError, ValueError) as err:
            skipped[name] = {"error": str(err)}
            continue
        v = next(iter(e.vectors.values()))
        loaded[name] = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                        "shape": int(v.shape[-1]), "vectors": int(v.shape[0]) if v.ndim > 1 else 1}
    return {"loaded": loaded, "skipped": skipped}



# -- segmenters (masks from words, background removal) ---------------------------------------------

REMBG = "rembg:"


def _rembg_models() -> list[str]:
    """``rembg:NAME`` for each ``NAME.onnx`` in rembg's folder, when the rembg package is installed
    (looked for, not imported: importing it starts onnxruntime)."""
    import importlib.util

    from gouache.vision.segment import rembg_home

    if importlib.util.find_spec("rembg") is None or not rembg_home().is_dir():
        return []
    return [REMBG + p.stem for p in sorted(rembg_home().glob("*.onnx"))
            if re.fullmatch(r"[\w.\-]+", p.stem) and p.is_file()]


def segmenter_names() -> list[str]:
    """Every segmenter a request can name, the default first: the built-in (when installed), the
    folders of ``$GOUACHE_HOME/segmenters``, then rembg's models on disk (``rembg:NAME``)."""
    from gouache.vision.segment import listed_segmenters

    return [*listed_segmenters(), *_rembg_models()]


def segmenters() -> list[dict]:
    """``GET /sdapi/v1/segmenters`` (gouache's own): ``[{name, kind, default}]``; ``kind`` is
    ``clipseg``, ``image-segmentation`` or ``rembg``."""
    import json

    from gouache.vision.segment import listed_segmenters

    folders = listed_segmenters()
    out = []
    for i, name in enumerate(segmenter_names()):
        kind = "rembg"
        if name in folders:
            try:
                config = json.loads((folders[name] / "config.json").read_text(encoding="utf-8"))
                kind = "clipseg" if config.get("model_type") == "clipseg" else "image-segmentation"
            except (OSError, ValueError, AttributeError):  # listed; loading it will say what is wrong
                kind = "unreadable"
        out.append({"name": name, "kind": kind, "default": i == 0})
    return out


def find_segmenter_name(name: str | None, what: str = "segmenter", bare_rembg: bool = False) -> str:
    """The listed segmenter a request names (never a path): ``None`` or ``""`` for the default (the
    built-in when installed, else the first listed). With ``bare_rembg`` (sd-webui-rembg's ``model``)
    a rembg model may be named without ``rembg:`` too, and a listed folder's name comes first.

    >>> find_segmenter_name("../../etc")
    Traceback (most recent call last):
    gouache.errors.InvalidArgument: ...
    """
    from gouache.errors import ModelLoadError, UnknownName
    from gouache.vision.segment import segmenters_dir

    names = segmenter_names()
    if name is None or name == "":
        if not names:
            raise ModelLoadError(f"this server has no segmenter: put a CLIPSeg folder in {segmenters_dir()} "
                                 "(or install rembg with a model's .onnx)")
        return names[0]
    if not isinstance(name, str):
        raise InvalidArgument(f"`{what}` must be a segmenter's name, got {type(name).__name__}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"`{what}` is {len(name)} characters long; name a segmenter from /sdapi/v1/segmenters")
    if name in names:
        return name
    if bare_rembg and REMBG + name in names:
        return REMBG + name
    if _UNSAFE.search(name) or "/" in name:
        raise InvalidArgument(f"`{what}` {name[:100]!r} is a path; name a segmenter from /sdapi/v1/segmenters")
    listed = ", ".join(names) or "none installed"
    rembg = name[len(REMBG):] if name.startswith(REMBG) else name if bare_rembg else None
    why = (f" (rembg's model {rembg!r} needs the rembg package and {rembg}.onnx in $U2NET_HOME or ~/.u2net; "
           "gouache never downloads it)") if rembg else ""
    raise UnknownName(f"`{what}`: no segmenter {name[:100]!r} on this server{why}; it has: {listed}")


# -- IP-Adapters (image prompts) --------------------------------------------------------------------


def ip_adapter_names() -> list[str]:
    """Every IP-Adapter a request can name: ``$GOUACHE_HOME/ip-adapter``'s, then the shipped ones
    (:func:`gouache.adapters.ip_adapter.list_ip_adapters`)."""
    from gouache.adapters.ip_adapter import list_ip_adapters

    return [e.name for e in list_ip_adapters()]


def ip_adapters() -> list[dict]:
    """``GET /sdapi/v1/ip-adapters`` (gouache's own): ``[{name, path, builtin}]``, what an IP-Adapter
    unit's ``model`` and the UI's image prompt can name (sd-webui-controlnet lists them among its
    ControlNet models)."""
    from gouache.adapters.ip_adapter import KIND, list_ip_adapters
    from gouache.models.builtin import builtin_adapters

    shipped = builtin_adapters(KIND)
    return [{"name": e.name, "path": str(e.path), "builtin": e.path.is_relative_to(shipped)}
            for e in list_ip_adapters()]


def find_ip_adapter_file(name, what: str = "model") -> str:
    """The weights file of the listed IP-Adapter ``name`` (``[hash]`` allowed; never a path): the
    one rule for the API's units and the UI's image prompt. When none is named and none is
    installed, the message says where one goes.

    >>> find_ip_adapter_file("../../etc/passwd")
    Traceback (most recent call last):
    gouache.errors.UnknownName: ...
    """
    from gouache.adapters.ip_adapter import ENCODER_FOLDER, KIND, find_ip_adapter
    from gouache.models.home import models_dir

    if name in (None, "", "None", "none"):
        if not ip_adapter_names():
            raise InvalidArgument(f"`{what}`: this server has no IP-Adapter: put one (its weights, with its "
                                  f"{ENCODER_FOLDER}/ folder or a NAME.json naming it) in {models_dir(KIND)}")
        raise InvalidArgument(f"`{what}` is missing: name the IP-Adapter, e.g. gouache-tiny-ip-adapter")
    if not isinstance(name, str):
        raise InvalidArgument(f"`{what}` must be an IP-Adapter name, got {type(name).__name__}")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidArgument(f"`{what}` is {len(name)} characters long; name an IP-Adapter from /sdapi/v1/ip-adapters")
    try:
        return str(find_ip_adapter(name).path)
    except GouacheError as err:
        raise type(err)(f"`{what}`: {err}") from None


# -- prompt tools: styles and wildcards ----------------------------------------------------------------


def prompt_styles() -> list[dict]:
    """``GET /sdapi/v1/prompt-styles``: ``[{name, prompt, negative_prompt}]`` of the server's
    ``$GOUACHE_HOME/styles.csv`` (and ``styles/*.csv``), what a request's ``styles`` can name."""
    from gouache.prompts.styles import load_styles

    return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
            for s in load_styles().values()]


def wildcards() -> list[dict]:
    """``GET /sdapi/v1/wildcards`` (gouache's own): ``[{name, options}]`` of the server's
    ``$GOUACHE_HOME/wildcards``, what ``__name__`` in a prompt can name (the files' contents stay
    on the server; a prompt reads them only through the names listed here)."""
    from gouache.errors import GouacheError
    from gouache.prompts.dynamic import WildcardLibrary

    library, out = WildcardLibrary(), []
    for name in library.names():
        try:
            options = len(library.lines(name))
        except GouacheError:
            options = 0  # unreadable or empty: listed, so that a prompt naming it gets the reason
        out.append({"name": name, "options": options})
    return out
