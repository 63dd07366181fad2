"""Train gouache-tiny from scratch on the procedural shapes dataset (``gouache train base``).

Two stages through the same loop (:func:`gouache.train.loop.train`):

1. ``vae``: the ``AutoencoderKL`` learns to reconstruct 64×64 shape images (L1 + MSE + a small KL
   term) in both styles from the start: filled shapes and, for ``outline_fraction`` of each batch,
   *outlines* (the same shapes drawn as a closed line). The base model never sees an outline; its VAE
   just has to be able to draw one, as Stable Diffusion's VAE draws styles its UNet was never asked
   for, so a LoRA can teach the style (``gouache train lora``, the shipped outline LoRA).
   Afterwards its latent scaling factor is set so the filled shapes' latents have unit variance, as
   SD's 0.18215.
2. ``diffusion``: the ``UNet2DConditionModel`` and the ``CLIPTextModel`` learn together to predict
   noise (epsilon) on the frozen VAE's latents, with 10 % of captions dropped for classifier-free
   guidance, min-SNR-γ loss weighting (Hang et al., 2023) to converge in fewer steps, and an EMA of
   the weights (which is what ships).
3. ``vae-styles`` (optional, ``--extend-vae``; off in the recipe): extends the VAE of a model
   trained without outlines after the fact. The VAE learns to reconstruct outline shapes too (half of each batch), while two
   keeping losses hold it to what stage 2 was trained against: its latents of filled shapes stay
   where they were, and it decodes the neighbourhood of those latents (noised by ``keep_noise``) as
   the old decoder did, so the denoiser needs no retraining. It is a patch: some latents of filled
   shapes the denoiser makes for unseen prompts then decode with an outline's rim, which is why the
   recipe trains both styles in stage 1 instead.
4. ``text-parts`` (optional, ``--extend-text``): teaches the text encoder of a trained model the
   parts of a caption (``on a blue background``, ``a red circle``, ``a square on a green
   background``), which the recipe's full captions never showed it: gouache-tiny read the colour
   of ``on a blue background`` as the shape's (21 % right backgrounds). Only the text encoder
   trains, against the frozen UNet's denoising loss on the parts; a keeping loss holds its output
   for every full caption and for the empty prompt (classifier-free guidance's negative) where it
   was, so what was built on the UNet (LoRAs, ControlNets, LCM-LoRA) still fits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gouache.errors import InvalidArgument
from gouache.models.latents import to_latents
from gouache.models.tiny_architecture import TinyConfig, build_text_encoder, build_unet, build_vae
from gouache.tiny.recipe import RecipeDefaults, build_noise_scheduler
from gouache.tiny.shapes import ShapesDataset
from gouache.train.diffusion import DenoisingLoss, drop_captions, encode_captions
from gouache.train.loop import LoopConfig, ObjectiveBase, train

DATASETS = {"shapes": ShapesDataset}


def _batch(ds: ShapesDataset, index: int, batch_size: int) -> tuple[torch.Tensor, list[str]]:
    arr, captions = ds.batch(index * batch_size, batch_size)
    return torch.from_numpy(arr), captions


class VAEObjective(ObjectiveBase):
    name = "vae"

    def __init__(self, cfg: TinyConfig, dataset: ShapesDataset, batch_size: int, kl_weight: float = 1e-5,
                 outline_fraction: float = 0.0, outline_dataset: ShapesDataset | None = None):
        self.vae = build_vae(cfg)
        self.dataset, self.batch_size, self.kl_weight = dataset, batch_size, kl_weight
        self.n_outline = round(batch_size * outline_fraction) if outline_dataset is not None else 0
        self.outline = outline_dataset

    def trainable(self):
        return self.vae

    def loss(self, model, index):
        x, _ = _batch(self.dataset, index, self.batch_size - self.n_outline)
        if self.n_outline:
            x = torch.cat([x, _batch(self.outline, index, self.n_outline)[0]])
        posterior = model.encode(x).latent_dist
        recon = model.decode(posterior.sample()).sample
        return F.l1_loss(recon, x) + F.mse_loss(recon, x) + self.kl_weight * posterior.kl().mean()

    @torch.no_grad()
    def finish(self, model, out_dir: Path) -> Path:
        model.eval()
        x, _ = _batch(self.dataset, 10_000_000, 512)  # indices far from the training stream
        std = model.encode(x).latent_dist.sample().std().item()
        model.register_to_config(scaling_factor=1.0 / std)
        recon = model.decode(model.encode(x).latent_dist.mode()).sample
        metrics = {"latent_std": std, "mean_abs_error_0_255": (recon - x).abs().mean().item() * 127.5}
        if self.n_outline:
            o, _ = _batch(self.outline, 10_000_000 // 4, 128)
            recon = model.decode(model.encode(o).latent_dist.mode()).sample
            metrics["outline_mean_abs_error_0_255"] = (recon - o).abs().mean().item() * 127.5
        model.save_pretrained(out_dir / "vae", safe_serialization=True)
        (out_dir / "vae_metrics.json").write_text(json.dumps(metrics))
        return out_dir / "vae"


class DiffusionObjective:
    name = "diffusion"

    def __init__(self, cfg: TinyConfig, vae, dataset: ShapesDataset, batch_size: int, recipe: RecipeDefaults):
        from diffusers.training_utils import EMAModel

        from gouache.models.clip_tokenizer import load_clip_tokenizer

        self.cfg, self.vae, self.dataset, self.batch_size, self.recipe = cfg, vae.eval(), dataset, batch_size, recipe
        self.vae.requires_grad_(False)
        self.tokenizer = load_clip_tokenizer()
        self.model = torch.nn.ModuleDict({"text_encoder": build_text_encoder(cfg), "unet": build_unet(cfg)})
        self.ema = EMAModel(self.model.parameters(), decay=recipe.ema_decay, use_ema_warmup=True, power=3 / 4)
        self.loss_fn = DenoisingLoss(build_noise_scheduler(), min_snr_gamma=recipe.min_snr_gamma)

    def trainable(self):
        return self.model

    def loss(self, model, index):
        x, captions = _batch(self.dataset, index, self.batch_size)
        captions = drop_captions(captions, self.recipe.caption_dropout, index)
        with torch.no_grad():
            latents = to_latents(self.vae, self.vae.encode(x).latent_dist.sample())
        hidden = encode_captions(self.tokenizer, model["text_encoder"], captions)
        return self.loss_fn(model["unet"], latents, hidden)

    def after_step(self, model):
        self.ema.step(model.parameters())

    def save_extra(self, folder):
        torch.save(self.ema.state_dict(), Path(folder) / "ema.pt")

    def load_extra(self, folder):
        self.ema.load_state_dict(torch.load(Path(folder) / "ema.pt", weights_only=True))

    def finish(self, model, out_dir: Path) -> Path:
        from gouache.tiny.recipe import pack, write_pipeline_folder

        self.ema.copy_to(model.parameters())
        model.eval()
        write_pipeline_folder(self.vae, model["text_encoder"], model["unet"], out_dir / "pipeline")
        return pack(self.vae, model["text_encoder"], model["unet"], self.cfg, out_dir / "gouache-tiny",
                    extra={"recipe": asdict(self.recipe)})


class VAEStylesObjective(ObjectiveBase):
    """Stage 3: extend the VAE to outline shapes, keeping its latents of filled shapes."""

    name = "vae-styles"

    def __init__(self, vae, batch_size: int, seed: int, keep_weight: float = 1.0, kl_weight: float = 1e-5,
                 keep_noise: float = 0.5):
        import copy

        self.vae = vae.train().requires_grad_(True)
        self.reference = copy.deepcopy(vae).eval().requires_grad_(False)
        self.filled = ShapesDataset(seed=seed * 2 + 11)
        self.outline = ShapesDataset(seed=seed * 2 + 12, style="outline")
        self.half, self.keep_weight, self.kl_weight, self.keep_noise = batch_size // 2, keep_weight, kl_weight, keep_noise

    def trainable(self):
        return self.vae

    def loss(self, model, index):
        filled, _ = _batch(self.filled, index, self.half)
        outline, _ = _batch(self.outline, index, self.half)
        x = torch.cat([filled, outline])
        posterior = model.encode(x).latent_dist
        recon = model.decode(posterior.sample()).sample
        with torch.no_grad():
            target = self.reference.encode(filled).latent_dist.mean
            # around the filled-shape latents: keep_noise in the UNet's (scaled) units
            near = target + self.keep_noise / self.reference.config.scaling_factor * torch.randn_like(target)
            old_image = self.reference.decode(near).sample
        keep = (F.mse_loss(to_latents(self.reference, posterior.mean[: self.half]), to_latents(self.reference, target))
                + F.mse_loss(model.decode(near).sample, old_image))
        return (F.l1_loss(recon, x) + F.mse_loss(recon, x) + self.kl_weight * posterior.kl().mean()
                + self.keep_weight * keep)

    @torch.no_grad()
    def finish(self, model, out_dir: Path) -> Path:
        model.eval()
        model.save_pretrained(out_dir / "vae", safe_serialization=True)
        return out_dir / "vae"


def extend_vae_styles(packed: Path, out_dir: Path, steps: int, lr: float, batch_size: int = 32, seed: int = 0,
                      checkpoint_minutes: float = 5.0, log=print) -> Path:
    """Stage 3 on a packed gouache-tiny (``.safetensors`` + ``.json``): returns the new packed file
    ``out_dir/gouache-tiny.safetensors`` with the extended VAE and the same text encoder and UNet."""
    from diffusers import AutoencoderKL

    from gouache.models.builtin import load_components
    from gouache.tiny.recipe import pack

    packed = Path(packed)
    vae, te, unet, meta = load_components(packed, packed.with_suffix(".json"))
    out_dir = Path(out_dir)
    stage = out_dir / "stage-vae-styles"
    if not (stage / "vae" / "config.json").is_file():
        train(VAEStylesObjective(vae, batch_size, seed),
              LoopConfig(stage, steps, lr, warmup_steps=min(100, steps // 10), seed=seed,
                         checkpoint_minutes=checkpoint_minutes), log)
    vae = AutoencoderKL.from_pretrained(stage / "vae")
    extra = {k: v for k, v in meta.items() if k not in ("name", "config", "scaling_factor")}
    extra["vae_styles"] = {"steps": steps, "lr": lr, "batch_size": batch_size, "styles": ["filled", "outline"]}
    return pack(vae, te, unet, TinyConfig.from_dict(meta["config"]), out_dir / "gouache-tiny", extra=extra)


# the parts of a caption stage 4 teaches (the text for an image of spec ``s``), and how often each is drawn
CAPTION_PARTS: tuple[tuple[str, float], ...] = (
    ("on a {background} background", 0.35),
    ("a {colour} {shape}", 0.25),
    ("a {shape} on a {background} background", 0.2),
    ("a {colour} shape on a {background} background", 0.1),
    ("a {shape}", 0.1),
)


def caption_part(spec, rng) -> str:
    """A part of ``spec``'s caption drawn from ``rng`` (:data:`CAPTION_PARTS`)."""
    r, total = rng.random(), 0.0
    for template, weight in CAPTION_PARTS:
        total += weight
        if r < total:
            break
    return template.format(colour=spec.colour, shape=spec.shape, background=spec.background)


class TextPartsObjective(ObjectiveBase):
    """Stage 4: the text encoder learns the parts of a caption, keeping its output for whole ones."""

    name = "text-parts"

    def __init__(self, vae, text_encoder, unet, batch_size: int, seed: int, keep_weight: float = 10.0):
        import copy

        from gouache.models.clip_tokenizer import load_clip_tokenizer

        self.vae, self.unet = vae.eval().requires_grad_(False), unet.eval().requires_grad_(False)
        self.text_encoder = text_encoder.train().requires_grad_(True)
        self.reference = copy.deepcopy(text_encoder).eval().requires_grad_(False)
        self.tokenizer = load_clip_tokenizer()
        self.dataset = ShapesDataset(seed=seed * 2 + 21)
        self.keep = ShapesDataset(seed=seed * 2 + 22)
        self.batch_size, self.seed, self.keep_weight = batch_size, seed, keep_weight
        self.loss_fn = DenoisingLoss(build_noise_scheduler(), min_snr_gamma=RecipeDefaults.min_snr_gamma)

    def trainable(self):
        return self.text_encoder

    def loss(self, model, index):
        import random

        rng = random.Random(self.seed * 1_000_003 + index)
        start = index * self.batch_size
        specs = [self.dataset.spec(start + i) for i in range(self.batch_size)]
        x, _ = _batch(self.dataset, index, self.batch_size)
        with torch.no_grad():
            latents = to_latents(self.vae, self.vae.encode(x).latent_dist.sample())
        parts = encode_captions(self.tokenizer, model, [caption_part(s, rng) for s in specs])
        whole = [self.keep[start + i].caption for i in range(self.batch_size // 2)] + [""]
        kept = encode_captions(self.tokenizer, model, whole)
        with torch.no_grad():
            target = encode_captions(self.tokenizer, self.reference, whole)
        return self.loss_fn(self.unet, latents, parts) + self.keep_weight * F.mse_loss(kept, target)

    @torch.no_grad()
    def finish(self, model, out_dir: Path) -> Path:
        model.eval()
        model.save_pretrained(out_dir / "text_encoder", safe_serialization=True)
        return out_dir / "text_encoder"


def extend_text_parts(packed: Path, out_dir: Path, steps: int, lr: float, batch_size: int = 32, seed: int = 0,
                      keep_weight: float = 10.0, checkpoint_minutes: float = 5.0, log=print) -> Path:
    """Stage 4 on a packed gouache-tiny: returns the new packed ``out_dir/gouache-tiny.safetensors``
    with the extended text encoder and the same VAE and UNet."""
    from transformers import CLIPTextModel

    from gouache.models.builtin import load_components
    from gouache.tiny.recipe import pack

    packed = Path(packed)
    vae, te, unet, meta = load_components(packed, packed.with_suffix(".json"))
    out_dir = Path(out_dir)
    stage = out_dir / "stage-text-parts"
    if not (stage / "text_encoder" / "config.json").is_file():
        train(TextPartsObjective(vae, te, unet, batch_size, seed, keep_weight),
              LoopConfig(stage, steps, lr, warmup_steps=min(100, steps // 10), seed=seed,
                         checkpoint_minutes=checkpoint_minutes), log)
    te = CLIPTextModel.from_pretrained(stage / "text_encoder")
    extra = {k: v for k, v in meta.items() if k not in ("name", "config", "scaling_factor", "figures")}
    extra["text_parts"] = {"steps": steps, "lr": lr, "batch_size": batch_size, "keep_weight": keep_weight,
                           "parts": [t for t, _ in CAPTION_PARTS]}
    return pack(vae, te, unet, TinyConfig.from_dict(meta["config"]), out_dir / "gouache-tiny", extra=extra)


@dataclass
class BaseTrainConfig:
    out_dir: Path
    dataset: str = "shapes"
    seed: int = 0
    vae_steps: int = RecipeDefaults.vae_steps
    diffusion_steps: int = RecipeDefaults.diffusion_steps
    vae_batch_size: int = RecipeDefaults.vae_batch_size
    diffusion_batch_size: int = RecipeDefaults.diffusion_batch_size
    vae_lr: float = RecipeDefaults.vae_lr
    diffusion_lr: float = RecipeDefaults.diffusion_lr
    vae_outline_fraction: float = RecipeDefaults.vae_outline_fraction
    vae_styles_steps: int = RecipeDefaults.vae_styles_steps
    vae_styles_lr: float = RecipeDefaults.vae_styles_lr
    text_parts_steps: int = RecipeDefaults.text_parts_steps
    text_parts_lr: float = RecipeDefaults.text_parts_lr
    text_parts_keep: float = RecipeDefaults.text_parts_keep
    mixed_precision: str = "no"
    checkpoint_minutes: float = 5.0


def train_base(cfg: BaseTrainConfig, log=print) -> Path:
    """Train (or resume) gouache-tiny; returns the packed ``.safetensors`` that ``gouache`` ships."""
    from diffusers import AutoencoderKL

    if cfg.dataset not in DATASETS:
        raise InvalidArgument(f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(DATASETS)}")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=2))
    tiny = TinyConfig()
    recipe = RecipeDefaults(vae_steps=cfg.vae_steps, diffusion_steps=cfg.diffusion_steps,
                            vae_batch_size=cfg.vae_batch_size, diffusion_batch_size=cfg.diffusion_batch_size,
                            vae_lr=cfg.vae_lr, diffusion_lr=cfg.diffusion_lr,
                            vae_outline_fraction=cfg.vae_outline_fraction, vae_styles_steps=cfg.vae_styles_steps)
    common = dict(mixed_precision=cfg.mixed_precision, checkpoint_minutes=cfg.checkpoint_minutes, seed=cfg.seed)

    if not (out / "vae" / "config.json").is_file():
        vae_ds = DATASETS[cfg.dataset](seed=cfg.seed * 2 + 1, resolution=tiny.resolution)
        outline_ds = DATASETS[cfg.dataset](seed=cfg.seed * 2 + 13, resolution=tiny.resolution, style="outline")
        train(VAEObjective(tiny, vae_ds, cfg.vae_batch_size, outline_fraction=cfg.vae_outline_fraction,
                           outline_dataset=outline_ds),
              LoopConfig(out / "stage-vae", cfg.vae_steps, cfg.vae_lr, **common), log)
        (out / "stage-vae" / "vae").rename(out / "vae")
        (out / "stage-vae" / "vae_metrics.json").rename(out / "vae_metrics.json")
        log(f"[vae] done: {(out / 'vae_metrics.json').read_text()}")
    vae = AutoencoderKL.from_pretrained(out / "vae")
    diff_ds = DATASETS[cfg.dataset](seed=cfg.seed * 2 + 2, resolution=tiny.resolution)
    objective = DiffusionObjective(tiny, vae, diff_ds, cfg.diffusion_batch_size, recipe)
    packed = train(objective, LoopConfig(out / "stage-diffusion", cfg.diffusion_steps, cfg.diffusion_lr, **common), log)
    if cfg.vae_styles_steps:
        packed = extend_vae_styles(packed, out, cfg.vae_styles_steps, cfg.vae_styles_lr, cfg.vae_batch_size,
                                   cfg.seed, cfg.checkpoint_minutes, log)
    if cfg.text_parts_steps:
        packed = extend_text_parts(packed, out, cfg.text_parts_steps, cfg.text_parts_lr, cfg.vae_batch_size, cfg.seed,
                                   cfg.text_parts_keep, checkpoint_minutes=cfg.checkpoint_minutes, log=log)
    folder = pipeline_folder(packed, out / "model")
    log(f"[base] done: the model is {folder} (gouache generate --model {folder}); the packed weights, as gouache "
        f"ships them, are {packed}")
    return packed


def pipeline_folder(packed: Path, folder: Path) -> Path:
    """The packed weights as a diffusers folder that ``--model`` and ``from_pretrained`` load
    (written to a temporary folder and renamed)."""
    from gouache.models.builtin import load_components
    from gouache.tiny.recipe import write_pipeline_folder

    packed = Path(packed)
    vae, te, unet, _ = load_components(packed, packed.with_suffix(".json"))
    return write_pipeline_folder(vae, te, unet, folder)
