"""``gouache train lora``: a LoRA for a Stable Diffusion model, trained on a prepared dataset.

peft adds the low-rank layers (``W + (alpha / rank) · B A``, B starting at zero) to the UNet's
attention projections, or to every linear and convolution layer of its transformer blocks
(kohya's default set), or to those and the ResNet convolutions as well (LoCon); optionally to the
text encoder too. The training itself is the one loop of :mod:`gouache.train.loop`.

The result is a ``.safetensors`` in kohya's key layout (``lora_unet_…​.lora_down.weight``,
``.lora_up.weight``, ``.alpha``) with kohya's ``ss_*`` training metadata in its header: the layout
AUTOMATIC1111, ComfyUI and diffusers' ``load_lora_weights`` all read. ``--format diffusers`` (or
``both``) also writes diffusers' own layout.

>>> cfg = LoraTrainConfig(dataset="data/outline", out_dir="runs/outline", name="outline")  # doctest: +SKIP
>>> train_lora(cfg)                                                                         # doctest: +SKIP
PosixPath('runs/outline/outline.safetensors')
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from gouache.errors import OutputError, check_int, check_number
from gouache.train.config import SAVE_DTYPES, TrainConfig, check_choice, check_lr, check_name
from gouache.train.diffusion import DenoisingLoss, FolderLatents, drop_captions, encode_captions, training_noise_scheduler
from gouache.train.driver import Trainer, image_folder, run
from gouache.train.processes import sharded

TARGETS = ("attn", "transformer", "all")
FORMATS = ("kohya", "diffusers", "both")
_ATTN = re.compile(r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$")
_TE = re.compile(r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))$")


@dataclass(kw_only=True)
class LoraTrainConfig(TrainConfig):
    """:class:`~gouache.train.config.TrainConfig` and what a LoRA adds: its name, shape, targets and file."""

    name: str = "lora"  # the output file's stem: the name prompts use, <lora:NAME:1>
    rank: int = 8
    alpha: float | None = None  # None: the rank (scale 1, as diffusers' scripts)
    targets: str = "transformer"
    train_text_encoder: bool = False
    text_encoder_lr: float | None = None  # None: --lr
    gradient_checkpointing: bool = False
    save_format: str = "kohya"
    save_dtype: str = "fp16"

    TRAINS = "LoRA training"

    def validate(self) -> None:
        super().validate()
        check_name("name", self.name, "file")
        check_int("rank", self.rank, 1, 4096)
        if self.alpha is not None:
            check_number("alpha", self.alpha, 1e-6, 65_536, " (None: the rank)")
        if self.text_encoder_lr is not None:
            check_lr("text_encoder_lr", self.text_encoder_lr)
        check_choice("targets", self.targets, TARGETS)
        check_choice("save_format", self.save_format, FORMATS)
        check_choice("save_dtype", self.save_dtype, SAVE_DTYPES)


def unet_targets(unet, targets: str) -> list[str]:
    """Names of the UNet modules that get LoRA layers for ``targets`` (see :data:`TARGETS`)."""
    names = []
    for name, module in unet.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        in_transformer = ".attentions." in f".{name}"
        if targets == "attn" and _ATTN.search(name):
            names.append(name)
        elif targets == "transformer" and in_transformer:
            names.append(name)
        elif targets == "all" and (in_transformer or re.search(r"(resnets\.\d+|downsamplers\.0|upsamplers\.0)\.", name)):
            names.append(name)
    return names


def text_encoder_targets(text_encoder) -> list[str]:
    return [n for n, m in text_encoder.named_modules() if isinstance(m, torch.nn.Linear) and _TE.search(n)]


class LoraObjective(Trainer):
    """A LoRA on the UNet (and optionally the text encoder), trained with the denoising loss."""

    name = "lora"
    makes = "LoRA"
    config_file = "lora_config.json"

    def __init__(self, cfg: LoraTrainConfig, model, dataset):
        from peft import LoraConfig

        super().__init__(cfg, model, dataset)
        pipe = model.pipeline
        self.unet, self.text_encoder, self.vae, self.tokenizer = pipe.unet, pipe.text_encoder, pipe.vae, pipe.tokenizer
        for m in (self.unet, self.text_encoder, self.vae):
            m.requires_grad_(False)
        self.vae.eval()
        alpha = cfg.alpha if cfg.alpha is not None else cfg.rank
        self.unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=alpha, target_modules=unet_targets(self.unet, cfg.targets),
                                         init_lora_weights=True))
        modules = {"unet": self.unet}
        if cfg.train_text_encoder:
            self.text_encoder.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=alpha,
                                                     target_modules=text_encoder_targets(self.text_encoder)))
            modules["text_encoder"] = self.text_encoder
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if cfg.train_text_encoder:
                self.text_encoder.gradient_checkpointing_enable()
        self.modules = torch.nn.ModuleDict(modules)
        self.loss_fn = DenoisingLoss(training_noise_scheduler(model.scheduler_config), cfg.min_snr_gamma, cfg.noise_offset)
        self.latents = FolderLatents(self.vae, dataset, cache=cfg.cache_latents)

    @classmethod
    def outputs(cls, cfg: LoraTrainConfig) -> list[Path]:
        return output_paths(cfg)

    @classmethod
    def load_data(cls, cfg: LoraTrainConfig, model):
        return image_folder(cfg, model)

    @classmethod
    def resume_settings(cls, cfg: LoraTrainConfig) -> dict[str, str]:
        """The LoRA's shape and what it adapts: a checkpoint of another shape cannot be resumed."""
        return {"--rank": str(cfg.rank), "--alpha": str(float(cfg.alpha if cfg.alpha is not None else cfg.rank)),
                "--targets": cfg.targets, "text encoder training": "on" if cfg.train_text_encoder else "off"}

    def trainable(self):
        return self.modules

    def param_groups(self, model, lr):
        groups = [{"params": [p for p in model["unet"].parameters() if p.requires_grad], "lr": lr}]
        if "text_encoder" in model:
            groups.append({"params": [p for p in model["text_encoder"].parameters() if p.requires_grad],
                           "lr": self.cfg.text_encoder_lr or lr})
        return groups

    @sharded
    def loss(self, model, index):
        latents, captions = self.latents.batch(index, self.cfg.batch_size, self.shard)
        captions = drop_captions(captions, self.cfg.caption_dropout, index, self.shard)
        with torch.set_grad_enabled(self.cfg.train_text_encoder):
            hidden = encode_captions(self.tokenizer, self.text_encoder, captions)
        return self.loss_fn(model["unet"], latents, hidden, shard=self.shard)

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path | None:
        """A grid of the validation prompts at their seeds, generated with the LoRA as it is now."""
        if not self.cfg.validation_prompts:
            return None
        return validation_grid(self.model, self.cfg.validation_prompts, self.cfg.validation_seed,
                               self.cfg.validation_steps, folder / f"step-{step:06d}.png", model)

    def finish(self, model, out_dir: Path) -> Path:
        return save_lora(self, out_dir)


def validation_grid(model, prompts: list[str], seed: int, steps: int, path: Path, trained: torch.nn.Module,
                    **request) -> Path:
    """``request``: more :class:`GenerationRequest` fields for every image (e.g. ``sampler``, ``cfg_scale``)."""
    from gouache.images import image_grid
    from gouache.metadata.png import atomic_write_bytes
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    trained.eval()
    try:
        images = [txt2img(model, GenerationRequest(p, seed=seed + i, steps=steps, **request))[0].image
                  for i, p in enumerate(prompts)]
    finally:
        trained.train()
    import io

    buf = io.BytesIO()
    image_grid(images).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue(), overwrite=True)


def kohya_state_dict(unet_state: dict, te_state: dict, alpha: float, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """peft LoRA tensors (``<module>.lora_A.weight``) in kohya's layout (``lora_unet_<module>.lora_down.weight``)."""
    out = {}
    for prefix, state in (("lora_unet", unet_state), ("lora_te", te_state)):
        for key, tensor in state.items():
            module, kind = key.rsplit(".lora_", 1)
            if prefix == "lora_te" and not module.startswith("text_model."):
                module = "text_model." + module  # transformers 5 dropped the `text_model.` level kohya names keep
            name = f"{prefix}_{module.replace('.', '_')}"
            out[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = tensor.to(dtype).contiguous()
            out[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return out


def kohya_metadata(cfg: LoraTrainConfig, objective: LoraObjective) -> dict[str, str]:
    """kohya's ``ss_*`` header fields (A1111 reads the base version, output name and tag frequency)."""
    unet = objective.unet
    v2 = unet.config.cross_attention_dim == 1024
    v_pred = objective.loss_fn.prediction_type == "v_prediction"
    tags = Counter(t.strip() for _, caption in objective.dataset.items for t in caption.split(",") if t.strip())
    conv = cfg.targets == "all"
    alpha = cfg.alpha if cfg.alpha is not None else cfg.rank
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(cfg.rank),
        "ss_network_alpha": str(float(alpha)),
        "ss_network_args": json.dumps({"conv_dim": str(cfg.rank), "conv_alpha": str(float(alpha))} if conv else {}),
        "ss_base_model_version": ("sd_v2_v" if v_pred else "sd_v2") if v2 else "sd_v1",
        "ss_v2": str(v2),
        "ss_sd_model_name": objective.model.name,
        "ss_new_sd_model_hash": objective.model.hash,
        "ss_output_name": cfg.name,
        "ss_resolution": str((objective.dataset.resolution, objective.dataset.resolution)),
        "ss_num_train_images": str(len(objective.dataset)),
        "ss_max_train_steps": str(cfg.steps),
        "ss_learning_rate": str(cfg.lr),
        "ss_unet_lr": str(cfg.lr),
        "ss_text_encoder_lr": str(cfg.text_encoder_lr or cfg.lr) if cfg.train_text_encoder else "0.0",
        "ss_network_train_unet_only": str(not cfg.train_text_encoder),
        "ss_batch_size_per_device": str(cfg.batch_size),
        "ss_gradient_accumulation_steps": str(cfg.grad_accum),
        "ss_lr_scheduler": "cosine_with_warmup",
        "ss_lr_warmup_steps": str(cfg.warmup_steps),
        "ss_mixed_precision": cfg.mixed_precision,
        "ss_min_snr_gamma": str(cfg.min_snr_gamma),
        "ss_noise_offset": str(cfg.noise_offset),
        "ss_seed": str(cfg.seed),
        "ss_tag_frequency": json.dumps({Path(cfg.dataset).name: dict(tags)}),
        "ss_training_comment": "trained with gouache train lora",
        "gouache_targets": cfg.targets,
    }
    return meta


def output_paths(cfg: LoraTrainConfig) -> list[Path]:
    out = Path(cfg.out_dir)
    paths = []
    if cfg.save_format in ("kohya", "both"):
        paths.append(out / f"{cfg.name}.safetensors")
    if cfg.save_format in ("diffusers", "both"):
        paths.append(out / f"{cfg.name}.diffusers.safetensors")
    return paths


def save_lora(objective: LoraObjective, out_dir: Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write the trained LoRA (atomically; an existing file only with ``overwrite``); ``extra_metadata``
    is merged into the kohya header (another trainer's ``ss_training_comment``, its own settings).
    With ``save_format="both"`` both files are written or neither: a second that fails (a full disk)
    takes the first away again, so running the command again is not refused for it."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    from gouache.metadata.png import atomic_write_bytes

    cfg = objective.cfg
    unet_state = get_peft_model_state_dict(objective.unet)
    te_state = get_peft_model_state_dict(objective.text_encoder) if cfg.train_text_encoder else {}
    dtype = SAVE_DTYPES[cfg.save_dtype]
    alpha = cfg.alpha if cfg.alpha is not None else cfg.rank
    paths, written = output_paths(cfg), []
    try:
        for path in paths:
            if path.name.endswith(".diffusers.safetensors"):
                state = {f"unet.{k}": v.to(dtype).contiguous() for k, v in unet_state.items()}
                state |= {f"text_encoder.{k}": v.to(dtype).contiguous() for k, v in te_state.items()}
                meta = {"format": "pt", "lora_adapter_metadata": json.dumps(
                    {"unet": {"r": cfg.rank, "lora_alpha": alpha}})}
            else:
                state, meta = kohya_state_dict(unet_state, te_state, alpha, dtype), kohya_metadata(cfg, objective)
                meta |= extra_metadata or {}
            written.append(atomic_write_bytes(path, save(state, metadata=meta), overwrite=cfg.overwrite))
    except OutputError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return paths[0]


def train_lora(cfg: LoraTrainConfig, log=print, objective: type = LoraObjective) -> Path:
    """Train (or resume) a LoRA; returns the path of the file written. ``objective``: a
    :class:`LoraObjective` subclass that trains the LoRA differently (``gouache train lcm-lora``)."""
    return run(cfg, objective, log)
