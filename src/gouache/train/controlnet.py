"""``gouache train controlnet``: a ControlNet for a Stable Diffusion model, trained on (image,
control image, caption) triples.

The ControlNet starts as a copy of the base UNet's encoder (``ControlNetModel.from_unet``: conv-in,
time embedding, down blocks, mid block; Zhang et al., 2023) with zero-initialised output
convolutions, so at step 0 it changes nothing. The base UNet, VAE and text encoder stay frozen; the
loss is the usual denoising loss (:class:`~gouache.train.diffusion.DenoisingLoss`) of the UNet with
the ControlNet's residuals added, and the training is the one loop of :mod:`gouache.train.loop`
(accelerate, mixed precision, accumulation, checkpoints of the ControlNet only, resume, validation).

The data: a prepared imagefolder whose ``metadata.jsonl`` rows have a ``conditioning_image``
column (diffusers' ``train_controlnet.py`` convention), or control images computed on the fly
from each image by a preprocessor (``preprocessor="canny"``); or ``shapes``, gouache-tiny's
procedural dataset (:mod:`gouache.tiny.shapes`), which is how the built-in edge ControlNet was made.

The result is a diffusers folder ``OUT/NAME`` (``config.json`` + ``diffusion_pytorch_model.safetensors``),
written atomically; copy it to ``$GOUACHE_HOME/controlnet``.

>>> cfg = ControlNetTrainConfig(dataset="shapes", out_dir="runs/edges", preprocessor="canny")  # doctest: +SKIP
>>> train_controlnet(cfg)                                                                       # doctest: +SKIP
PosixPath('runs/edges/controlnet')
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gouache.errors import InvalidArgument, OutputError, check_int
from gouache.models.latents import to_latents
from gouache.train.config import SAVE_DTYPES, TrainConfig, check_choice, check_name
from gouache.train.diffusion import DenoisingLoss, drop_captions, encode_captions, sample_latents, training_noise_scheduler
from gouache.train.driver import Trainer, run
from gouache.train.processes import WHOLE, Shard, sharded

SHAPES = "shapes"


@dataclass(kw_only=True)
class ControlNetTrainConfig(TrainConfig):
    """:class:`~gouache.train.config.TrainConfig` and what a ControlNet adds. ``dataset`` is a
    prepared imagefolder, or "shapes" (gouache-tiny's procedural dataset)."""

    name: str = "controlnet"
    preprocessor: str | None = None  # control images computed from the images; None: the conditioning_image column
    embedding_channels: tuple[int, ...] = (16, 32, 96, 256)  # the control image's encoder (ControlNet's default)
    lr: float = 1e-5
    validation_count: int = 4  # dataset items shown in each validation grid (control | generated)
    save_dtype: str = "fp16"

    # its images are resized to the resolution as they are (no crop, no flip); validation draws dataset items
    UNUSED = ("crop", "flip", "cache_latents", "validation_prompts")
    TRAINS = "ControlNet training"

    def validate(self) -> None:
        from gouache.control.preprocessors import get_preprocessor

        super().validate()
        if self.preprocessor is not None:
            get_preprocessor(self.preprocessor)
        elif str(self.dataset) == SHAPES:
            raise InvalidArgument("the shapes dataset has no control images; give --preprocessor, e.g. canny")
        check_choice("save_dtype", self.save_dtype, SAVE_DTYPES)
        check_int("validation_count", self.validation_count, 0, 64)
        if len(self.embedding_channels) < 2 or any(c < 1 for c in self.embedding_channels):
            raise InvalidArgument(f"`embedding_channels` must be at least two positive numbers, got {self.embedding_channels}")
        check_name("name", self.name, "folder")


class ControlPairs:
    """(image, control image, caption) triples at ``resolution``; batch ``index`` is the same on every run.

    ``source`` is ``"shapes"`` or a prepared imagefolder. Control images come from ``preprocessor``
    when given, else from the folder's ``conditioning_image`` column.
    """

    def __init__(self, source: str | Path, resolution: int, preprocessor: str | None = None, seed: int = 0):
        self.resolution, self.preprocessor, self.seed = resolution, preprocessor, seed
        if str(source) == SHAPES:
            from gouache.tiny.shapes import ShapesDataset

            self.shapes = ShapesDataset(seed=seed, resolution=resolution)
            self.rows: list[tuple[Path, Path | None, str]] = []
        else:
            self.shapes = None
            self.rows = read_control_folder(Path(source), needs_control=preprocessor is None)

    def __len__(self) -> int:
        return len(self.shapes) if self.shapes is not None else len(self.rows)

    def item(self, i: int) -> tuple[Image.Image, Image.Image, str]:
        from gouache.control.preprocessors import run_preprocessor
        from gouache.images import flatten, load_image, resize_image

        if self.shapes is not None:
            it = self.shapes[i]
            image, control, caption = it.image, None, it.caption
        else:
            path, control_path, caption = self.rows[i]
            image = resize_image(1, flatten(load_image(path)), self.resolution, self.resolution)
            control = None
            if control_path is not None and self.preprocessor is None:
                control = resize_image(1, flatten(load_image(control_path)), self.resolution, self.resolution)
        if control is None:
            control = run_preprocessor(self.preprocessor, image)
        return image, control, caption

    def batch(self, index: int, batch_size: int, shard: Shard = WHOLE) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Pixels ``(N, 3, H, W)`` in [-1, 1], control images in [0, 1], captions: ``shard``'s
        ``batch_size`` rows of global batch ``index`` (see :mod:`gouache.train.processes`)."""
        rng = random.Random(self.seed * 1_000_003 + index)
        size = batch_size * shard.world
        if self.shapes is not None:
            picks = [index * size + k for k in range(size)]  # an unlimited dataset: never repeat
        else:
            picks = [rng.randrange(len(self.rows)) for _ in range(size)]
        items = [self.item(i) for i in picks[shard.rows(batch_size)]]
        pixels = torch.stack([_tensor(im) * 2 - 1 for im, _, _ in items])
        controls = torch.stack([_tensor(c) for _, c, _ in items])
        return pixels, controls, [cap for _, _, cap in items]


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def read_control_folder(folder: Path, needs_control: bool = True) -> list[tuple[Path, Path | None, str]]:
    """``[(image, control image or None, caption), ...]`` from a folder's ``metadata.jsonl``."""
    from gouache.data.folder import read_imagefolder

    items = read_imagefolder(folder)  # checks the file names and captions
    meta = folder / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for (image, caption), row in zip(items, rows):
        name = row.get("conditioning_image")
        if name is None:
            if needs_control:
                raise InvalidArgument(f"{meta}: the row of {row['file_name']!r} has no `conditioning_image`; add "
                                      "the column, or compute control images with --preprocessor (e.g. canny)")
            out.append((image, None, caption))
            continue
        control = (folder / name).resolve()
        if folder.resolve() not in control.parents or not control.is_file():
            raise InvalidArgument(f"{meta}: conditioning image {name!r} is missing or outside the dataset folder")
        out.append((image, control, caption))
    return out


class _ControlledUNet:
    """The frozen UNet with the ControlNet's residuals added: what the denoising loss calls."""

    def __init__(self, unet, controlnet, control: torch.Tensor, added: dict | None = None):
        self.unet, self.controlnet, self.control, self.added = unet, controlnet, control, added

    def __call__(self, noisy, t, hidden):
        down, mid = self.controlnet(noisy, t, encoder_hidden_states=hidden, controlnet_cond=self.control,
                                    added_cond_kwargs=self.added, return_dict=False)
        return self.unet(noisy, t, hidden, added_cond_kwargs=self.added, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid)


class ControlNetObjective(Trainer):
    """A ControlNet started from the base UNet's encoder, trained with the UNet, VAE and text encoder frozen."""

    name = "controlnet"
    makes = "ControlNets"
    sdxl_hint = " (SDXL ControlNets load and run)"
    config_file = "controlnet_config.json"

    def __init__(self, cfg: ControlNetTrainConfig, model, dataset: ControlPairs):
        from diffusers import ControlNetModel

        super().__init__(cfg, model, dataset)
        self.unet, self.vae, self.text_encoder, self.tokenizer = self.frozen_base(model)
        self.controlnet = ControlNetModel.from_unet(self.unet, conditioning_embedding_out_channels=tuple(cfg.embedding_channels))
        self.controlnet.train()
        self.loss_fn = DenoisingLoss(training_noise_scheduler(model.scheduler_config), cfg.min_snr_gamma, cfg.noise_offset)

    @classmethod
    def outputs(cls, cfg: ControlNetTrainConfig) -> list[Path]:
        return [Path(cfg.out_dir) / cfg.name]

    @classmethod
    def load_data(cls, cfg: ControlNetTrainConfig, model) -> ControlPairs:
        return ControlPairs(cfg.dataset, cfg.resolution or model.native_size, cfg.preprocessor, cfg.seed)

    @classmethod
    def resume_settings(cls, cfg: ControlNetTrainConfig) -> dict[str, str]:
        return {"--embedding-channels": ",".join(str(c) for c in cfg.embedding_channels)}

    def trainable(self):
        return self.controlnet

    @sharded
    def loss(self, model, index):
        pixels, control, captions = self.dataset.batch(index, self.cfg.batch_size, self.shard)
        captions = drop_captions(captions, self.cfg.caption_dropout, index, self.shard)
        with torch.no_grad():
            latents = to_latents(self.vae, sample_latents(self.vae.encode(pixels.to(self.vae.dtype)).latent_dist, self.shard))
            hidden = encode_captions(self.tokenizer, self.text_encoder, captions)
        return self.loss_fn(_ControlledUNet(self.unet, model, control.to(latents.dtype)), latents, hidden, shard=self.shard)

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path | None:
        """A grid with one row per validation item: its control image, then the image generated from it."""
        if not self.cfg.validation_count:
            return None
        from gouache.control.models import LoadedControlNet

        model.eval()
        try:
            path = control_grid(self.model, LoadedControlNet(model, self.cfg.name, ""), self.dataset,
                                self.cfg.validation_count, self.cfg.validation_seed, self.cfg.validation_steps,
                                folder / f"step-{step:06d}.png")
        finally:
            model.train()
        return path

    def finish(self, model, out_dir: Path) -> Path:
        return save_controlnet(model, Path(out_dir) / self.cfg.name, SAVE_DTYPES[self.cfg.save_dtype], self.cfg.overwrite)


def control_grid(model, controlnet, dataset: ControlPairs, count: int, seed: int, steps: int, path: Path) -> Path:
    """Control image | generated image for the last ``count`` items of the dataset (past the training
    batches of the unlimited shapes dataset), each from seed ``seed + k``."""
    import io

    from gouache.control.spec import ControlSpec
    from gouache.images import image_grid
    from gouache.metadata.png import atomic_write_bytes
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    tiles = []
    for k in range(count):
        image, control, caption = dataset.item((len(dataset) - 1 - k) % len(dataset))
        spec = ControlSpec("none", control, controlnet)
        made = txt2img(model, GenerationRequest(caption, seed=seed + k, steps=steps, controls=[spec]))[0].image
        tiles += [control, made]
    buf = io.BytesIO()
    image_grid(tiles, cols=2).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue(), overwrite=True)


def save_controlnet(net, folder: Path, dtype=torch.float16, overwrite: bool = False,
                    extra: dict[str, bytes] | None = None) -> Path:
    """``net`` as a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``, and the
    ``extra`` files by name), written into a temporary folder and renamed into place."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise OutputError(f"{folder} exists; choose another --name or --out, or pass --overwrite")
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    net.save_config(tmp)  # what save_pretrained writes, with the tensors cast here instead of the module
    state = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    for name, data in (extra or {}).items():
        (tmp / name).write_bytes(data)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def train_controlnet(cfg: ControlNetTrainConfig, log=print) -> Path:
    """Train (or resume) a ControlNet; returns the diffusers folder written."""
    return run(cfg, ControlNetObjective, log)
