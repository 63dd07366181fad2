"""A model's generation defaults: facts about the model, shipped with it and read the same way
for every model.

A request that leaves the CFG scale or the guidance interval unset gets its model's. A diffusers
folder declares them in ``gouache.json`` next to ``model_index.json``::

    {"generation_defaults": {"cfg_scale": 5.0, "cfg_truncation": 0.5}}

and gouache-tiny's packed ``.json`` carries the same key (its recipe writes both: the model is at
its best there, docs/gouache-tiny.md). A model that declares nothing, and every single-file
checkpoint, gets AUTOMATIC1111's: CFG 7, guidance on every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from gouache.errors import ModelLoadError

FILE = "gouache.json"
KEY = "generation_defaults"


@dataclass(frozen=True)
class GenerationDefaults:
    cfg_scale: float = 7.0  # AUTOMATIC1111's
    cfg_truncation: float = 1.0  # guidance on every step

    def to_dict(self) -> dict:
        return asdict(self)


A1111 = GenerationDefaults()
_RANGES = {"cfg_scale": (0.0, 100.0), "cfg_truncation": (0.0, 1.0)}


def parse_defaults(data: object, where: str) -> GenerationDefaults:
    """The ``generation_defaults`` mapping (absent keys: AUTOMATIC1111's); a bad one is one error naming ``where``."""
    if not isinstance(data, dict) or set(data) - set(_RANGES):
        raise ModelLoadError(f"{where}: {KEY!r} must be a mapping with keys among {', '.join(_RANGES)}, got {data!r}")
    for key, value in data.items():
        low, high = _RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise ModelLoadError(f"{where}: {KEY}.{key} must be a number from {low:g} to {high:g}, got {value!r}")
    return GenerationDefaults(**{k: float(v) for k, v in data.items()})


def read_defaults(path: str | Path) -> GenerationDefaults:
    """What the model at ``path`` declares: a folder's ``gouache.json``, a packed gouache-tiny's
    ``.json`` beside its ``.safetensors``; otherwise AUTOMATIC1111's."""
    path = Path(path)
    source = path / FILE if path.is_dir() else path.with_suffix(".json")
    if not source.is_file() or (not path.is_dir() and path.suffix != ".safetensors"):
        return A1111
    try:
        meta = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if path.is_dir():
            raise ModelLoadError(f"{source}: cannot read the model's defaults: {e}") from None
        return A1111  # a .json beside a checkpoint that is not ours
    if not isinstance(meta, dict) or KEY not in meta:
        return A1111
    return parse_defaults(meta[KEY], str(source))


def write_defaults(folder: Path, defaults: GenerationDefaults) -> None:
    """``folder/gouache.json`` with ``defaults`` (the folder is being written; the caller renames it)."""
    (Path(folder) / FILE).write_text(json.dumps({KEY: defaults.to_dict()}, indent=2))
