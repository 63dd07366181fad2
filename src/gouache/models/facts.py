"""Facts about a model that ship with the model and are read the same way for every model.

A diffusers folder declares them in ``gouache.json`` beside ``model_index.json``; a packed
gouache-tiny in the ``.json`` beside its ``.safetensors``. Every key is optional::

    {"generation_defaults": {"cfg_scale": 5.0, "cfg_truncation": 0.5},
     "latent_preview": {"matrix": [[r, g, b], [r, g, b], [r, g, b], [r, g, b]], "bias": [r, g, b]},
     "native_size": 64,
     "figures": {"adherence_cfg5_seen": 1.0}}

* ``generation_defaults``: what a request that leaves the CFG scale or the guidance interval
  unset gets (absent: AUTOMATIC1111's, CFG 7 and guidance on every step);
* ``latent_preview``: the cheap preview's linear map from the latent channels (rows) to RGB in
  [-1, 1], plus an offset (absent: the architecture's, :mod:`gouache.sampling.preview`);
* ``native_size``: the side the model was trained at (absent: read off the UNet and VAE configs);
* ``figures``: what the model was measured at, as numbers (how: the model's own documentation);
* ``motion_adapter``: the motion adapter ``gouache video`` uses when a request names none (its name,
  as ``--motion`` takes it; absent: a request must name one).

gouache-tiny's files carry them (docs/gouache-tiny.md says where each comes from). A single-file
checkpoint declares nothing unless its ``.safetensors`` has such a ``.json`` beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gouache.errors import InvalidArgument, ModelLoadError, check_int, check_number

FILE = "gouache.json"


@dataclass(frozen=True)
class GenerationDefaults:
    cfg_scale: float = 7.0  # AUTOMATIC1111's
    cfg_truncation: float = 1.0  # guidance on every step

    def to_dict(self) -> dict:
        return asdict(self)


A1111 = GenerationDefaults()


@dataclass(frozen=True)
class LatentPreview:
    """AUTOMATIC1111's "Approx cheap": RGB in [-1, 1] = latent pixel @ ``matrix`` + ``bias``."""

    matrix: tuple[tuple[float, float, float], ...]  # one row per latent channel: its R, G, B weights
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def to_dict(self) -> dict:
        return {"matrix": [list(row) for row in self.matrix], "bias": list(self.bias)}


@dataclass(frozen=True)
class ModelFacts:
    defaults: GenerationDefaults = A1111
    preview: LatentPreview | None = None  # None: the architecture's coefficients
    native_size: int | None = None  # None: the UNet's sample size times the VAE's downscaling
    figures: Mapping[str, float] = field(default_factory=dict)  # measured figures, by name
    motion_adapter: str | None = None  # gouache video's default motion adapter for this model

    def to_dict(self) -> dict:
        """The keys of the files (the defaults always; the rest when declared)."""
        out: dict = {"generation_defaults": self.defaults.to_dict()}
        if self.preview is not None:
            out["latent_preview"] = self.preview.to_dict()
        if self.native_size is not None:
            out["native_size"] = self.native_size
        if self.figures:
            out["figures"] = dict(self.figures)
        if self.motion_adapter is not None:
            out["motion_adapter"] = self.motion_adapter
        return out


NO_FACTS = ModelFacts()
_DEFAULT_RANGES = {"cfg_scale": (0.0, 100.0), "cfg_truncation": (0.0, 1.0)}
LATENT_CHANNELS = 4  # every architecture gouache loads (SD 1.x, 2.x, XL) has 4 latent channels


def _mapping(data: object, key: str, allowed: tuple[str, ...]) -> Mapping:
    if not isinstance(data, Mapping) or set(data) - set(allowed):
        raise InvalidArgument(f"`{key}` must be a mapping with keys among {', '.join(allowed)}, got {data!r}")
    return data


def declared_defaults(data: object, key: str) -> dict[str, float]:
    """The generation settings ``data`` (a ``generation_defaults`` mapping) names, checked; only those
    it names (a motion adapter's ``gouache.json`` declares some and leaves the rest to the model)."""
    data = _mapping(data, key, tuple(_DEFAULT_RANGES))
    return {k: float(check_number(f"{key}.{k}", v, *_DEFAULT_RANGES[k])) for k, v in data.items()}


def _defaults(data: object, key: str) -> GenerationDefaults:
    return GenerationDefaults(**declared_defaults(data, key))


def _rgb_rows(data: object, key: str, rows: int) -> tuple[tuple[float, float, float], ...]:
    if not isinstance(data, list) or len(data) != rows or not all(isinstance(r, list) and len(r) == 3 for r in data):
        raise InvalidArgument(f"`{key}` must be {rows} list(s) of 3 numbers (R, G, B), got {data!r}")
    return tuple(tuple(float(check_number(key, v, -100.0, 100.0)) for v in row) for row in data)


def _preview(data: object, key: str) -> LatentPreview:
    data = _mapping(data, key, ("matrix", "bias"))
    if "matrix" not in data:
        raise InvalidArgument(f"`{key}` needs a `matrix`: {LATENT_CHANNELS} rows (latent channels) of R, G, B")
    matrix = _rgb_rows(data["matrix"], f"{key}.matrix", LATENT_CHANNELS)
    bias = _rgb_rows([data.get("bias", [0.0, 0.0, 0.0])], f"{key}.bias", 1)[0]
    return LatentPreview(matrix, bias)


def _native_size(value: object, key: str) -> int:
    size = check_int(key, value, 8, 8192)
    if size % 8:
        raise InvalidArgument(f"`{key}` must be a multiple of 8 (the VAE's latent grid), got {size}")
    return size


def _figures(data: object, key: str) -> dict[str, float]:
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise InvalidArgument(f"`{key}` must be a mapping of names to numbers, got {data!r}")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidArgument(f"`{key}.{name}` must be a finite number, got {value!r}")
    return {k: float(v) for k, v in data.items()}


def _name(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidArgument(f"`{key}` must be a motion adapter's name (a non-empty string), got {value!r}")
    return value.strip()


# file key -> (ModelFacts field, reader); a key not listed here is some other tool's and is ignored
READERS = {
    "generation_defaults": ("defaults", _defaults),
    "latent_preview": ("preview", _preview),
    "native_size": ("native_size", _native_size),
    "figures": ("figures", _figures),
    "motion_adapter": ("motion_adapter", _name),
}


def parse_facts(meta: Mapping, where: str) -> ModelFacts:
    """The facts in a file's mapping ``meta``; a bad value is one :class:`ModelLoadError` naming ``where``."""
    try:
        return ModelFacts(**{name: read(meta[key], key) for key, (name, read) in READERS.items() if key in meta})
    except InvalidArgument as e:
        raise ModelLoadError(f"{where}: {e}") from None


def facts_file(path: str | Path) -> Path | None:
    """Where the model at ``path`` would declare its facts: a folder's ``gouache.json``, the
    ``.json`` beside a ``.safetensors``; None for anything else."""
    path = Path(path)
    if path.is_dir():
        return path / FILE
    return path.with_suffix(".json") if path.suffix == ".safetensors" else None


def read_facts(path: str | Path) -> ModelFacts:
    """What the model at ``path`` declares (:func:`facts_file`); :data:`NO_FACTS` when nothing.

    A folder's unreadable ``gouache.json`` is an error; a ``.json`` beside a checkpoint that is no
    mapping is some other tool's sidecar and declares nothing."""
    source = facts_file(path)
    if source is None or not source.is_file():
        return NO_FACTS
    try:
        meta = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if source.name == FILE:
            raise ModelLoadError(f"{source}: cannot read the model's facts: {e}") from None
        return NO_FACTS
    if not isinstance(meta, dict):
        return NO_FACTS
    return parse_facts(meta, str(source))


def write_facts(folder: str | Path, facts: ModelFacts) -> None:
    """``folder/gouache.json`` with ``facts`` (the folder is being written; the caller renames it)."""
    (Path(folder) / FILE).write_text(json.dumps(facts.to_dict(), indent=2))
