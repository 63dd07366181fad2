"""Motion adapters (AnimateDiff): temporal attention modules added to an ordinary SD UNet.

AnimateDiff (Guo et al., 2023) trains *motion modules* — small transformers that attend across the
frames at each position — and inserts one after every spatial layer of a frozen SD UNet, so every
checkpoint, LoRA and ControlNet of that UNet makes video. gouache reads the layouts people have
from ``$GOUACHE_HOME/motion``:

* a diffusers ``MotionAdapter`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``);
* an original AnimateDiff motion-module file (``mm_sd_v15_v2.ckpt``, ``.safetensors``, SDXL's
  ``mm_sdxl_v10_beta.ckpt``): keys ``down_blocks.0.motion_modules.0.temporal_transformer...``,
  renamed to diffusers' as diffusers' ``convert_animatediff_checkpoint_to_diffusers`` does, its
  configuration read from the weights' shapes (``.ckpt`` only through ``torch.load(weights_only=True)``);
* motion LoRAs (camera pans and zooms, ``$GOUACHE_HOME/motion/lora``): LoRA on the motion modules'
  attention projections, in the original (``processor.to_q_lora.down``), diffusers (``to_q.lora.down``)
  or PEFT (``to_q.lora_A``) naming, fused into the loaded adapter at a weight.

The modules are not copied into a new ``UNetMotionModel`` (diffusers' ``from_unet2d``): they are
hooked onto the model's own UNet (:meth:`LoadedMotion.installed`) after the layers where
``UNetMotionModel`` runs them, so LoRA, ControlNet residuals and gouache's attention settings on
that UNet work unchanged and no second copy of its weights exists. A test holds the output equal
to ``UNetMotionModel.from_unet2d``'s.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName

SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
CONFIG = "config.json"
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")  # a MotionAdapter folder's
CROSS_ATTENTION_LORA = "cross-attention-lora.safetensors"  # a LoRA on the UNet's cross-attention that goes with the adapter
MOTION_TEXT = "motion-text.safetensors"  # the prompt read out for the modules (gouache.adapters.motion_text), beside them
FACTS = "gouache.json"  # what the adapter declares: {"generation_defaults": {"cfg_truncation": 1.0}} (see read_defaults)
MAX_SCALE = 4.0
# original AnimateDiff names -> diffusers' (diffusers' convert_animatediff_checkpoint_to_diffusers)
_RENAMES = ((".norms.0", ".norm1"), (".norms.1", ".norm2"), (".ff_norm", ".norm3"),
            (".attention_blocks.0", ".attn1"), (".attention_blocks.1", ".attn2"), (".temporal_transformer", ""))
ORIGINAL_HEADS = 8  # every released AnimateDiff motion module uses 8 heads (not recorded in its weights)


# -- names ------------------------------------------------------------------------------------------


def parse_motion(text: str) -> tuple[str, float]:
    """``"NAME[:SCALE]"`` as ``(name, scale)``; the scale is the trailing number (a path may hold ':').

    >>> parse_motion("mm_sd_v15_v2:0.8")
    ('mm_sd_v15_v2', 0.8)
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"`motion` must be a motion adapter's name, e.g. mm_sd_v15_v2 or mm_sd_v15_v2:0.8, got {text!r}")
    name, _, last = text.strip().rpartition(":")
    if name and _is_number(last):
        scale = float(last)
        if not 0 <= scale <= MAX_SCALE:
            raise InvalidArgument(f"`motion` scale must be from 0 to {MAX_SCALE:g} (0: no motion), got {last}")
        return name.strip(), scale
    return text.strip(), 1.0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _folders(sub: str = "") -> list[Path]:
    """The user's ``$GOUACHE_HOME/motion`` first, then the adapters that ship with gouache, if any."""
    from gouache.models.builtin import builtin_adapters
    from gouache.models.home import models_dir

    folders = [models_dir("motion") / sub]
    try:
        folders.append(builtin_adapters("motion") / sub)
    except UnknownName:  # no shipped motion adapter in this version
        pass
    return folders


def _entries(folder: Path, lora: bool) -> list[tuple[Path, PurePosixPath]]:
    """``(path, name)`` for each adapter under ``folder``: a diffusers folder (``config.json`` with
    weights) by its folder, a single file by its path without the extension. The ``lora`` subfolder
    holds motion LoRAs, not adapters."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not lora and rel.parts[0] == "lora":
            continue
        if p.is_dir() and (p / CONFIG).is_file() and not lora:
            out.append((p, PurePosixPath(rel.as_posix())))
        elif p.is_file() and p.suffix.lower() in SUFFIXES and not (p.parent / CONFIG).is_file():
            name = rel.parent if lora and p.name.startswith("diffusion_pytorch_model") else rel.with_suffix("")
            out.append((p, PurePosixPath(name.as_posix())))
    return out


def _names(what: str, lora: bool):
    from gouache.models.names import Names

    groups = [_entries(f, lora) for f in _folders("lora" if lora else "")]
    tiers = lambda e: [[str(e[1])], [e[1].name]]  # noqa: E731
    return Names(what, groups, tiers, lambda e: str(e[1]))


def list_motions() -> list[str]:
    """Every motion adapter a request can name, the user's first."""
    return list(dict.fromkeys(str(n) for f in _folders() for _, n in _entries(f, False)))


def list_motion_loras() -> list[str]:
    """Every motion LoRA a request can name (``$GOUACHE_HOME/motion/lora``)."""
    return list(dict.fromkeys(str(n) for f in _folders("lora") for _, n in _entries(f, True)))


def find_motion(name: str, paths: bool = True) -> Path:
    """The folder or file of the motion adapter ``name`` (a path too, when ``paths``: never for the API)."""
    hint = f". Put motion adapters (MotionAdapter folders, mm_*.ckpt/.safetensors) in {_folders()[0]}"
    names = _names("motion adapter", False)
    if paths:
        return names.resolve(name, lambda p: (p, PurePosixPath(p.stem)), SUFFIXES, hint)[0]
    return names.lookup(name, hint)[0]


def find_motion_lora(name: str, paths: bool = True) -> Path:
    hint = f". Put motion LoRA files or folders in {_folders('lora')[0]}"
    names = _names("motion LoRA", True)
    if paths:
        path = names.resolve(name, lambda p: (p, PurePosixPath(p.stem)), SUFFIXES, hint)[0]
        if path.is_dir():
            files = sorted(q for q in path.iterdir() if q.suffix.lower() in SUFFIXES)
            if not files:
                raise ModelLoadError(f"motion LoRA folder {path} holds no weights file")
            return files[0]
        return path
    return names.lookup(name, hint)[0]


# -- loading ----------------------------------------------------------------------------------------


@dataclass
class LoadedMotion:
    """A motion adapter ready to hook onto a UNet: diffusers' ``MotionAdapter`` module, its name and
    short hash (the infotext's ``Motion module``), the layout it came in and the motion LoRAs fused in."""

    adapter: object  # diffusers.MotionAdapter
    name: str
    hash: str
    layout: str  # "diffusers" or "original"
    loras: dict = field(default_factory=dict)  # name -> (weight, short hash)
    text_lora: Path | None = None  # the folder's CROSS_ATTENTION_LORA, applied to the UNet with the adapter
    text_lora_hash: str | None = None  # its short hash (the infotext's "Motion module LoRA hash")
    readout: object = None  # the folder's MOTION_TEXT (gouache.adapters.motion_text.TextReadout): the prompt for the modules
    readout_hash: str | None = None  # its short hash (the infotext's "Motion module text hash")
    generation_defaults: dict = field(default_factory=dict)  # the folder's FACTS: settings a request leaving them gets

    def unet_loras(self, scale: float) -> list:
        """The LoRA that goes with the adapter (``gouache train motion --text-lora``: what lets the
        UNet's cross-attention carry the caption's motion words to the motion modules), at the motion
        scale, as a :class:`~gouache.adapters.lora.LoraRequest`; none for an adapter without one."""
        from gouache.adapters.lora import LoraRequest

        if self.text_lora is None or scale == 0:
            return []
        return [LoraRequest(f"{self.name}.cross-attention", 0.0, scale, self.text_lora)]

    @property
    def max_frames(self) -> int:
        """The longest window its position embeddings cover (``motion_max_seq_length``: 24 or 32)."""
        return int(self.adapter.config.motion_max_seq_length)

    @contextlib.contextmanager
    def installed(self, unet, frames: "FrameCount", scale: float = 1.0):
        """Hook the motion modules onto ``unet`` (checked with :func:`check_fits`) for the ``with``
        block. ``frames.n`` says how many frames each batch of the UNet holds (clips one after
        another); ``scale`` blends each module's output with its input (1: as trained, 0: off)."""
        check_fits(self, unet)
        first = next(self.adapter.parameters())
        if first.dtype != unet.dtype or first.device != unet.device:
            self.adapter.to(unet.device, unet.dtype)
        handles, steering = [], None
        try:
            if self.readout is not None:
                from gouache.adapters.motion_text import Steering, text_of_call

                self.readout.to(unet.device, unet.dtype)
                steering = Steering(self.readout)
                handles.append(unet.register_forward_pre_hook(
                    lambda m, args, kwargs: steering.read(text_of_call(args, kwargs)), with_kwargs=True))
            for index, (target, module) in enumerate(pairs(self.adapter, unet)):
                handles.append(target.register_forward_hook(_motion_hook(module, frames, scale, steering, index)))
            yield self
        finally:
            for h in handles:
                h.remove()


@dataclass
class FrameCount:
    """How many consecutive batch rows form one clip, for the hooked motion modules (set by the
    model call before each UNet call: a context window has fewer frames than the clip)."""

    n: int = 1


def _motion_hook(module, frames: FrameCount, scale: float, steering=None, index: int = 0):
    def hook(layer, args, output):
        h = output[0] if isinstance(output, tuple) else output
        if steering is None:
            moved = module(h, num_frames=frames.n)
        else:  # the module's attention reads the steered input; its residual is still h
            x = steering.steer(h, index)
            moved = h + (module(x, num_frames=frames.n) - x)
        if scale != 1.0:
            moved = h + scale * (moved - h)
        return (moved, *output[1:]) if isinstance(output, tuple) else moved

    return hook


def pairs(adapter, unet) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """``(UNet layer, motion module)``: each module runs on the output of the layer it follows in
    diffusers' ``UNetMotionModel`` — a block's attention where it has one, else its ResNet; in the
    middle block, after each attention."""
    out = []
    for blocks, motion_blocks in ((unet.down_blocks, adapter.down_blocks), (unet.up_blocks, adapter.up_blocks)):
        for block, motion in zip(blocks, motion_blocks):
            layers = getattr(block, "attentions", None) or block.resnets
            out.extend(zip(layers, motion.motion_modules))
    if adapter.mid_block is not None:
        out.extend(zip(unet.mid_block.attentions, adapter.mid_block.motion_modules))
    return out


def motion_modules(adapter) -> list[torch.nn.Module]:
    """The adapter's motion modules in :func:`pairs` order (down blocks, up blocks, middle)."""
    out = [m for b in adapter.down_blocks for m in b.motion_modules]
    out += [m for b in adapter.up_blocks for m in b.motion_modules]
    if adapter.mid_block is not None:
        out += list(adapter.mid_block.motion_modules)
    return out


def check_fits(motion: LoadedMotion, unet) -> None:
    """One :class:`InvalidArgument` when the adapter was made for another UNet (other block widths
    or layer counts): its modules would not line up with the UNet's layers."""
    a, u = motion.adapter.config, unet.config
    want = tuple(a.block_out_channels)
    have = tuple(u.block_out_channels)
    layers = u.layers_per_block if isinstance(u.layers_per_block, int) else u.layers_per_block[0]
    counts = {len(b.motion_modules) for b in motion.adapter.down_blocks}
    reason = None
    if want != have:
        reason = f"UNet blocks of {_channels(want)} channels; this model's UNet has {_channels(have)}"
    elif counts != {layers}:
        reason = f"{'/'.join(map(str, sorted(counts)))} layers per UNet block; this model's UNet has {layers}"
    elif motion.adapter.mid_block is not None and len(motion.adapter.mid_block.motion_modules) != len(unet.mid_block.attentions):
        reason = "another middle block"
    if reason:
        raise InvalidArgument(f"motion adapter {motion.name!r} is for another UNet: it was made for {reason} "
                              "(an SD 1.5 adapter needs an SD 1.5 model, an SDXL one an SDXL model)")


def _channels(c: tuple) -> str:
    return "(" + ", ".join(map(str, c)) + ")"


def load_motion(name_or_path: str, paths: bool = True, loras: list[tuple[str, float]] | None = None) -> LoadedMotion:
    """The motion adapter ``name_or_path`` (see the module docstring for the layouts), with the motion
    LoRAs ``[(name, weight)]`` fused in. Unreadable weights are one :class:`ModelLoadError`.

    >>> motion = load_motion("mm_sd_v15_v2", loras=[("v2_lora_ZoomIn", 0.8)])   # doctest: +SKIP
    """
    from diffusers import MotionAdapter

    from gouache.adapters.lora import short_hash

    path = find_motion(name_or_path, paths)
    name = path.name if path.is_dir() else path.stem
    if path.is_dir():
        try:
            adapter = MotionAdapter.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelLoadError(f"motion adapter folder {path} cannot be read: {str(e).splitlines()[0]}") from None
        weights = next((path / w for w in WEIGHTS if (path / w).is_file()), None)
        weights = weights or next((p for p in sorted(path.iterdir()) if p.suffix in (".safetensors", ".bin")
                                   and p.name not in (CROSS_ATTENTION_LORA, MOTION_TEXT)), path / CONFIG)
        layout = "diffusers"
    else:
        adapter, weights, layout = adapter_from_original(read_weights(path), path), path, "original"
    adapter.eval().requires_grad_(False)
    text_lora = path / CROSS_ATTENTION_LORA if path.is_dir() and (path / CROSS_ATTENTION_LORA).is_file() else None
    from gouache.adapters.motion_text import TextReadout

    readout_file = path / MOTION_TEXT if path.is_dir() and (path / MOTION_TEXT).is_file() else None
    readout = TextReadout.load(readout_file) if readout_file is not None else None
    if readout is not None and readout.dims != [m.proj_in.in_features for m in motion_modules(adapter)]:
        raise ModelLoadError(f"{readout_file} does not fit the motion adapter beside it (other module widths)")
    motion = LoadedMotion(adapter, name, short_hash(weights), layout, text_lora=text_lora,
                          text_lora_hash=short_hash(text_lora) if text_lora is not None else None, readout=readout,
                          readout_hash=short_hash(readout_file) if readout_file is not None else None,
                          generation_defaults=read_defaults(path / FACTS) if path.is_dir() else {})
    for lora, weight in loras or []:
        fuse_motion_lora(motion, lora, weight, paths)
    return motion


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors: safetensors, or a pickle read with ``torch.load(weights_only=True)``
    (which refuses code); a ``state_dict`` wrapper is unwrapped."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors, pickle and zip errors have no common base
        raise ModelLoadError(f"{path} cannot be read as weights: {str(e).splitlines()[0][:200]}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(f"{path} holds no tensors by name (not a weights file)")
    return sd


def read_defaults(path: Path) -> dict:
    """The generation settings a motion adapter folder declares in its ``gouache.json`` (as a model
    folder does, :mod:`gouache.models.facts`), only those it names: ``{"generation_defaults":
    {"cfg_truncation": 1.0}}`` gives clips made with it guidance on every step when the request
    leaves ``cfg_truncation`` unset, whatever the image model's own default; ``cfg_scale`` likewise.
    Nothing declared (or no file): ``{}``; a file that cannot be read is one error."""
    import json

    from gouache.models.facts import declared_defaults

    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return declared_defaults(meta.get("generation_defaults", {}) if isinstance(meta, dict) else meta,
                                 "generation_defaults")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, InvalidArgument) as e:
        raise ModelLoadError(f"{path}: cannot read the motion adapter's settings: {e}") from None


_BLOCK = re.compile(r"(down_blocks|up_blocks|mid_block)\.?(\d*)\.motion_modules\.(\d+)\.")


def adapter_from_original(sd: dict[str, torch.Tensor], path: Path):
    """A diffusers ``MotionAdapter`` from an original AnimateDiff motion-module state dict: the
    configuration from the weights' shapes (block widths, modules per block, middle block, the
    position table's length), the keys renamed to diffusers'."""
    from diffusers import MotionAdapter

    blocks: dict[str, dict[int, set]] = {"down_blocks": {}, "up_blocks": {}, "mid_block": {}}
    widths: dict[int, int] = {}
    seq, layers = None, 1
    for key, value in sd.items():
        m = _BLOCK.match(key)
        if m is None:
            continue
        kind, index = m.group(1), int(m.group(2) or 0)
        blocks[kind].setdefault(index, set()).add(int(m.group(3)))
        if kind == "down_blocks" and key.endswith("temporal_transformer.norm.weight"):
            widths[index] = value.shape[0]
        if "pos_encoder.pe" in key:
            seq = value.shape[1]
        t = re.search(r"transformer_blocks\.(\d+)\.", key)
        if t:
            layers = max(layers, int(t.group(1)) + 1)
    if not blocks["down_blocks"] or len(widths) != len(blocks["down_blocks"]):
        raise ModelLoadError(f"{path} is not an AnimateDiff motion module (no down_blocks.N.motion_modules."
                             "N.temporal_transformer weights)")
    n = len(blocks["down_blocks"])
    config = dict(
        block_out_channels=tuple(widths[i] for i in range(n)),
        motion_layers_per_block=len(blocks["down_blocks"][0]),
        motion_transformer_layers_per_block=layers,
        motion_mid_block_layers_per_block=len(blocks["mid_block"].get(0, ())) or 1,
        motion_num_attention_heads=ORIGINAL_HEADS,
        motion_max_seq_length=seq or 32,
        use_motion_mid_block=bool(blocks["mid_block"]),
    )
    try:
        adapter = MotionAdapter(**config)
        renamed = {_diffusers_key(k): v for k, v in sd.items() if "pos_encoder" not in k}
        missing, unexpected = adapter.load_state_dict(renamed, strict=False)
    except (RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{path}: the motion module's weights do not fit its layout: "
                             f"{str(e).splitlines()[0][:200]}") from None
    if unexpected or [k for k in missing if "pos_embed" not in k]:
        raise ModelLoadError(f"{path}: unexpected motion-module layout ({len(missing)} missing, "
                             f"{len(unexpected)} unknown weights, e.g. {(unexpected or missing)[0]})")
    return adapter


def _diffusers_key(key: str) -> str:
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key


def original_state_dict(adapter) -> dict[str, torch.Tensor]:
    """The adapter's weights in the original AnimateDiff layout (what ``mm_sd_v15_v2.ckpt`` holds,
    with its sinusoidal ``pos_encoder.pe`` tables): the inverse of :func:`adapter_from_original`'s
    renaming. Used to write original-layout files (tests, exports)."""
    out = {}
    seq = adapter.config.motion_max_seq_length
    for key, value in adapter.state_dict().items():
        if "pos_embed" in key:
            continue
        m = re.match(r"(.*?motion_modules\.\d+)\.(.*)", key)
        new = f"{m.group(1)}.temporal_transformer.{m.group(2)}"
        for orig, diff in ((".attention_blocks.0", ".attn1"), (".attention_blocks.1", ".attn2"), (".norms.0", ".norm1"),
                           (".norms.1", ".norm2"), (".ff_norm", ".norm3")):
            new = new.replace(diff + ".", orig + ".")
        out[new] = value.contiguous()
        if new.endswith("attention_blocks.0.to_q.weight") or new.endswith("attention_blocks.1.to_q.weight"):
            width = value.shape[1]
            out[new.replace("to_q.weight", "pos_encoder.pe")] = _sinusoid(seq, width)
    return out


def _sinusoid(length: int, width: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    div = torch.exp(torch.arange(0, width, 2) * (-torch.log(torch.tensor(10000.0)) / width))
    pe = torch.zeros(1, length, width)
    pe[0, :, 0::2], pe[0, :, 1::2] = torch.sin(position * div), torch.cos(position * div)
    return pe


# -- motion LoRA ------------------------------------------------------------------------------------

_LORA_KEY = re.compile(r"^(?:unet\.)?(.*motion_modules\.\d+\..*?)\.(?:processor\.)?(to_q|to_k|to_v|to_out(?:\.0)?)"
                       r"(?:_lora\.|\.lora\.|\.lora_)(down|up|A|B)\.weight$")


def fuse_motion_lora(motion: LoadedMotion, name: str, weight: float, paths: bool = True) -> None:
    """Add ``weight · up @ down`` of the motion LoRA ``name`` to the adapter's attention projections
    (the original ``processor.to_q_lora.down``, diffusers' ``to_q.lora.down`` and PEFT's
    ``to_q.lora_A`` namings, with or without the ``unet.`` prefix); ``alpha`` scales by alpha/rank
    where the file has it. The adapter was loaded for this request, so fusing changes no one else's."""
    from gouache.adapters.lora import short_hash

    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -MAX_SCALE <= weight <= MAX_SCALE:
        raise InvalidArgument(f"motion LoRA {name!r}: the weight must be a number from {-MAX_SCALE:g} to {MAX_SCALE:g}, got {weight!r}")
    path = find_motion_lora(name, paths)
    sd = read_weights(path)
    pieces: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = _LORA_KEY.match(key)
        if m is None:
            continue
        target = _diffusers_key(m.group(1)) + "." + ("to_out.0" if m.group(2).startswith("to_out") else m.group(2))
        pieces.setdefault(target, {})["down" if m.group(3) in ("down", "A") else "up"] = value
        alpha = key.rsplit(".", 2)[0] + ".alpha"
        if alpha in sd:
            pieces[target]["alpha"] = sd[alpha]
    if not pieces:
        raise ModelLoadError(f"motion LoRA {path} has no LoRA weights on motion modules "
                             "(keys like down_blocks.0.motion_modules.0...to_q.lora.down.weight)")
    modules = dict(motion.adapter.named_modules())
    for target, p in pieces.items():
        layer = modules.get(target)
        if layer is None or "down" not in p or "up" not in p:
            raise ModelLoadError(f"motion LoRA {path.name} does not fit motion adapter {motion.name!r} ({target})")
        down, up = p["down"].float(), p["up"].float()
        scale = float(p["alpha"]) / down.shape[0] if "alpha" in p else 1.0
        delta = weight * scale * (up @ down)
        if delta.shape != layer.weight.shape:
            raise InvalidArgument(f"motion LoRA {path.name} is for another motion adapter than {motion.name!r} "
                                  f"({target}: {tuple(delta.shape)} vs {tuple(layer.weight.shape)})")
        with torch.no_grad():
            layer.weight += delta.to(layer.weight.dtype)
    motion.loras[path.parent.name if path.name.startswith("diffusion_pytorch_model") else path.stem] = (
        weight, short_hash(path))
