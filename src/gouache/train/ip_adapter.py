"""``gouache train ip-adapter``: an IP-Adapter for a frozen base, trained on the shapes world.

What trains is IP-Adapter's (Ye et al., 2023): an image projection (diffusers' ``ImageProjection``:
the image encoder's embedding to 4 tokens of the UNet's cross-attention width) and a
``to_k_ip``/``to_v_ip`` pair per cross-attention layer, started from the layer's own ``to_k``/``to_v``
as h94 starts them. The base UNet, VAE and text encoder stay frozen, and so does the image encoder
(gouache-tiny-clip's vision tower by default: its 64-wide ``image_embeds``). The loss is the usual
denoising loss with the adapter installed (:func:`gouache.adapters.ip_attention.installed`), on the
one loop (:mod:`gouache.train.loop`: checkpoints of the adapter only, resume, validation).

The data (:func:`ip_batch`), so that an image of a shape conditions the generation as its caption
would while the text can still set the background:

- the target is a shapes item (held-out colour-shape pairs never appear);
- the image prompt is another rendering of the same colour, shape and style, on another
  background, at another place and size (so the adapter carries what the shape is, not where);
- the text is mostly ``on a {background} background``, sometimes the full caption, sometimes empty;
- IP-Adapter's drop-outs: the image (its embedding zeroed, the CFG negative), the text, or both,
  a few per cent each.

``projection="parts"`` (the built-in's last stages) keeps h94's plain layout but lets two of the four
tokens read only the image embedding's colour part and two only its shape part
(:func:`part_projectors`): a colour-shape pair never seen then arrives as a colour and a shape the
adapter knows, where a free projection learns each seen pair as a whole.

The result is h94's layout, ``OUT/NAME.safetensors`` (``image_proj.proj.*``, ``image_proj.norm.*``,
``ip_adapter.{2i+1}.to_k_ip.weight``, ...), with ``OUT/NAME.json`` naming its image encoder: what
:func:`gouache.adapters.ip_adapter.load_ip_adapter` reads. Validation measures the bar of
:mod:`gouache.tiny.ip_eval` on ``eval_n`` seen and held-out cases.

>>> train_ip_adapter(IPAdapterTrainConfig("shapes", "runs/ip"))   # doctest: +SKIP
PosixPath('runs/ip/gouache-tiny-ip-adapter.safetensors')
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gouache.errors import InvalidArgument, OutputError, check_int, check_number
from gouache.tiny.shapes import COLOURS, STYLES, draw, random_spec
from gouache.train.config import SAVE_DTYPES, TrainConfig, check_choice, check_name
from gouache.train.diffusion import DenoisingLoss, encode_captions, training_noise_scheduler
from gouache.train.driver import Trainer, run

SHAPES_DATASET = "shapes"
TOKENS = 4  # image tokens: h94's plain adapter (diffusers reads this layout as 4 tokens)
PROJECTIONS = ("plain", "plus", "parts")
PARTS = ("colour", "colour", "shape", "shape")  # what each of the parts projection's 4 tokens reads
PARTS_SAMPLES = 768  # seen renderings whose embeddings give the parts' subspaces
PLUS_TOKENS = 16  # the Resampler's queries in h94's "plus" adapters
PLUS_DEPTH = 4  # h94's, and the only depth diffusers' converter reads
PLUS_HEAD = 64  # diffusers' converter reads heads as to_q's width // 64


@dataclass(kw_only=True)
class IPAdapterTrainConfig(TrainConfig):
    """:class:`~gouache.train.config.TrainConfig` and what an IP-Adapter adds: its image encoder, the
    recipe's text mix and drop-outs, and the validation's size."""

    name: str = "gouache-tiny-ip-adapter"
    image_encoder: str = "gouache-tiny-clip"  # a path, the built-in CLIP, or a folder in $GOUACHE_HOME/clip
    batch_size: int = 16
    lr: float = 2e-4
    steps: int = 4000
    full_caption: float = 0.2  # texts that are the whole caption (the rest: "on a {background} background" or empty)
    empty_text: float = 0.1  # texts that are empty: the image alone
    outline: float = 0.25  # items drawn in outline style (the image prompt carries the style)
    drop_image: float = 0.05  # IP-Adapter's drop-outs: the image embedding zeroed
    drop_text: float = 0.05  # the text emptied
    drop_both: float = 0.05  # both
    eval_n: int = 16  # cases per set (seen, held-out) at each validation
    save_dtype: str = "fp16"
    init_weights: str | None = None  # an IP-Adapter file (h94's layout) to start from instead of h94's start
    distill: float = 0.0  # weight of the base's own prediction from the whole caption in the target (0: plain noise)
    projection: str = "plain"  # plain: h94's ip-adapter_sd15 (the image embedding, 4 tokens); plus: its Resampler on the
    # patches; parts: plain, its tokens reading the embedding's colour or shape subspace only (saved as plain)
    embed_noise: float = 0.0  # Gaussian noise added to each image embedding in training, relative to its RMS (0: off)

    UNUSED = ("resolution", "crop", "flip", "cache_latents", "caption_dropout", "validation_prompts",
              "validation_seed")
    TRAINS = "IP-Adapter training"

    def validate(self) -> None:
        super().validate()
        if str(self.dataset) != SHAPES_DATASET:
            raise InvalidArgument(f"IP-Adapter training reads the procedural dataset `shapes`, got {self.dataset!r}")
        check_name("name", self.name, "file")
        for name in ("full_caption", "empty_text", "outline", "drop_image", "drop_text", "drop_both"):
            check_number(name, getattr(self, name), 0, 1, " (a fraction of the items)")
        if self.full_caption + self.empty_text > 1:
            raise InvalidArgument("`full_caption` + `empty_text` must be at most 1 (the rest are background-only texts)")
        if self.drop_image + self.drop_text + self.drop_both > 1:
            raise InvalidArgument("`drop_image` + `drop_text` + `drop_both` must be at most 1")
        check_int("eval_n", self.eval_n, 0, 10_000)
        check_number("distill", self.distill, 0, 1, " (0: the plain denoising target, 1: the base's prediction from the caption)")
        check_choice("save_dtype", self.save_dtype, SAVE_DTYPES)
        check_choice("projection", self.projection, PROJECTIONS)
        check_number("embed_noise", self.embed_noise, 0, 4, " (0: off; relative to the embedding's RMS)")
        if self.embed_noise and self.projection == "plus":
            raise InvalidArgument("`embed_noise` is for the plain and parts projections (one image embedding); leave it "
                                  "out with plus")
        if self.init_weights is not None and not Path(self.init_weights).is_file():
            raise InvalidArgument(f"`init_weights` {self.init_weights!r} is not a file: name an IP-Adapter file "
                                  "(.safetensors or .bin, h94's layout) to start from")


@dataclass(frozen=True)
class IPItem:
    """One training item: the target image, the image prompt, the text, whether the image is
    dropped, and the target's whole caption (what ``distill``'s teacher reads)."""

    target: object  # PIL image
    prompt: object  # PIL image
    text: str
    drop_image: bool
    caption: str = ""


def ip_item(cfg: IPAdapterTrainConfig, index: int) -> IPItem:
    """Item ``index`` of the recipe (see the module docstring), the same on every run."""
    rng = random.Random(cfg.seed * 1_000_003 + index)
    style = STYLES[1] if rng.random() < cfg.outline else STYLES[0]
    spec = random_spec(rng, style=style)  # never a held-out pair
    other = rng.choice([c for c in COLOURS if c not in (spec.colour, spec.background)])
    prompt = random_spec(rng, colour=spec.colour, shape=spec.shape, background=other, style=style)
    r = rng.random()
    text = spec.caption if r < cfg.full_caption else "" if r < cfg.full_caption + cfg.empty_text \
        else f"on a {spec.background} background"
    d, i, t, b = rng.random(), cfg.drop_image, cfg.drop_text, cfg.drop_both  # h94's: image, text, both
    drop_image = d < i or i + t <= d < i + t + b
    text = "" if i <= d < i + t + b else text
    return IPItem(draw(spec), draw(prompt), text, drop_image, spec.caption)


class IPAdapterModules(torch.nn.Module):
    """What trains: the image projection and a ``to_k_ip``/``to_v_ip`` per cross-attention layer of
    ``unet``, started from the layer's ``to_k``/``to_v`` (h94's initialisation). It has what
    :func:`~gouache.adapters.ip_attention.installed` reads (``image_proj``, ``to_k``, ``to_v``, ``tokens``).

    ``projection`` "plain" is h94's ``ip-adapter_sd15`` (diffusers' ``ImageProjection``: the image
    embedding, ``image_dim`` wide, to 4 tokens); "plus" is its ``ip-adapter-plus_sd15`` (diffusers'
    ``IPAdapterPlusImageProjection``, a Resampler: 16 learnt queries attending to the image encoder's
    penultimate hidden states, ``image_dim`` = its hidden size, 4 layers of 64-wide heads as diffusers'
    converter reads them); "parts" is the plain projection whose token ``k`` reads the embedding through
    ``parts[k]`` only (:func:`part_projectors`), saved as the plain layout with those weights."""

    def __init__(self, unet, image_dim: int, projection: str = "plain", parts: torch.Tensor | None = None):
        from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection

        from gouache.adapters.ip_attention import cross_attention_layers

        super().__init__()
        cross = unet.config.cross_attention_dim
        self.projection = projection
        if projection == "plus":
            hidden = max(PLUS_HEAD, cross // PLUS_HEAD * PLUS_HEAD)
            self.tokens = PLUS_TOKENS
            self.image_proj = IPAdapterPlusImageProjection(embed_dims=image_dim, output_dims=cross, hidden_dims=hidden,
                                                           depth=PLUS_DEPTH, dim_head=PLUS_HEAD, heads=hidden // PLUS_HEAD,
                                                           num_queries=PLUS_TOKENS)
        else:
            self.tokens = TOKENS
            kind = ImageProjection
            if projection == "parts":
                if parts is None or tuple(parts.shape) != (TOKENS, image_dim, image_dim):
                    raise ValueError(f"the parts projection needs {TOKENS} projectors of {image_dim}×{image_dim}")
                kind = _parts_projection()
            self.image_proj = kind(image_embed_dim=image_dim, cross_attention_dim=cross, num_image_text_embeds=TOKENS)
            if projection == "parts":
                self.image_proj.register_buffer("parts", parts.float(), persistent=False)
        layers = [attn for _, attn in cross_attention_layers(unet)]
        self.to_k = torch.nn.ModuleList([_copy(attn.to_k) for attn in layers])
        self.to_v = torch.nn.ModuleList([_copy(attn.to_v) for attn in layers])

    def h94_state(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """The weights in h94's key layout."""
        state = {f"image_proj.{k}": v for k, v in self.h94_projection().items()}
        for i, (k, v) in enumerate(zip(self.to_k, self.to_v)):
            state[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = k.weight
            state[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = v.weight
        return {key: t.detach().to(dtype).contiguous() for key, t in state.items()}

    def h94_projection(self) -> dict[str, torch.Tensor]:
        """The image projection's weights under h94's keys (without ``image_proj.``): the plain
        ``proj``/``norm``, or the Resampler's ``latents``, ``proj_in``, ``proj_out``, ``norm_out`` and
        per layer ``{i}.0.norm1/norm2/to_q/to_kv/to_out`` and ``{i}.1.0/1/3`` (what diffusers'
        ``_convert_ip_adapter_image_proj_to_diffusers`` reads back)."""
        proj = self.image_proj
        if self.projection in ("plain", "parts"):
            return {"proj.weight": _effective_weight(proj), "proj.bias": proj.image_embeds.bias,
                    "norm.weight": proj.norm.weight, "norm.bias": proj.norm.bias}
        state = {"latents": proj.latents}
        for name in ("proj_in", "proj_out", "norm_out"):
            module = getattr(proj, name)
            state[f"{name}.weight"], state[f"{name}.bias"] = module.weight, module.bias
        for i, block in enumerate(proj.layers):
            for mine, theirs in ((block.ln0, "0.norm1"), (block.ln1, "0.norm2"), (block.ff[0], "1.0")):
                state[f"layers.{i}.{theirs}.weight"], state[f"layers.{i}.{theirs}.bias"] = mine.weight, mine.bias
            state[f"layers.{i}.0.to_q.weight"] = block.attn.to_q.weight
            state[f"layers.{i}.0.to_kv.weight"] = torch.cat([block.attn.to_k.weight, block.attn.to_v.weight])
            state[f"layers.{i}.0.to_out.weight"] = block.attn.to_out[0].weight
            state[f"layers.{i}.1.1.weight"] = block.ff[1].net[0].proj.weight
            state[f"layers.{i}.1.3.weight"] = block.ff[1].net[2].weight
        return state


    def start_from(self, path: Path, unet, model_name: str) -> None:
        """Start from an IP-Adapter file's weights (h94's layout) instead of the base's ``to_k``/``to_v``:
        fine-tuning an adapter further, or continuing one on a changed base. An adapter for another
        base or image encoder is one :class:`InvalidArgument`."""
        from gouache.adapters.ip_adapter import layer_weights, read_ip_adapter_file

        state = read_ip_adapter_file(Path(path))
        layers = layer_weights(state, unet, str(path), model_name)
        mine = self.h94_projection()
        theirs = state["image_proj"]
        for key, tensor in mine.items():
            got = theirs.get(key)
            if got is None or got.shape != tensor.shape:
                shape = "none" if got is None else tuple(got.shape)
                raise InvalidArgument(f"{path}: its image projection does not fit this recipe ({key}: {shape}, "
                                      f"expected {tuple(tensor.shape)}): another image encoder, --projection or "
                                      "token count")
        with torch.no_grad():
            projection = unet._convert_ip_adapter_image_proj_to_diffusers(theirs, low_cpu_mem_usage=False)
            self.image_proj.load_state_dict(projection.state_dict())
            for (k, v), to_k, to_v in zip(layers, self.to_k, self.to_v):
                to_k.weight.copy_(k)
                to_v.weight.copy_(v)


def _effective_weight(proj) -> torch.Tensor:
    """The plain projection's weight as it acts: for a parts projection, token ``k``'s rows times its projector."""
    weight = proj.image_embeds.weight
    parts = getattr(proj, "parts", None)
    if parts is None:
        return weight
    tokens, image_dim = parts.shape[0], parts.shape[-1]
    rows = weight.reshape(tokens, -1, image_dim)
    return torch.matmul(rows, parts.to(weight.dtype)).reshape(weight.shape)


@functools.cache
def _parts_projection() -> type:
    """diffusers' ``ImageProjection`` acting with :func:`_effective_weight` (its ``parts`` buffer, not saved:
    what is saved is the plain layout)."""
    from diffusers.models.embeddings import ImageProjection

    class PartsImageProjection(ImageProjection):
        def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
            weight = _effective_weight(self)
            out = torch.nn.functional.linear(image_embeds.to(weight.dtype), weight, self.image_embeds.bias)
            return self.norm(out.reshape(image_embeds.shape[0], self.num_image_text_embeds, -1))

    return PartsImageProjection


@torch.no_grad()
def part_projectors(encoder, processor, seed: int = 0, n: int = PARTS_SAMPLES) -> torch.Tensor:
    """``(TOKENS, D, D)`` orthogonal projectors onto the image embedding's parts, one per token (:data:`PARTS`).

    From ``n`` seen renderings (a quarter outlines): the colour part is spanned by the mean embedding
    of each shape colour less the overall mean, the shape part by each shape's and each style's; each
    part is then made orthogonal to the other, so a token reading the colour part reads the same for
    a colour whatever its shape, and a shape token the same whatever its colour. (Nearest class means
    in each part tell 97.8 % of new renderings' colours and 98.8 % of their shapes.) A held-out pair then
    gives the colour tokens of its colour and the shape tokens of its shape, parts the adapter knows
    (gouache-tiny-clip's embedding is close to additive: a held-out pair's embedding has cosine 0.97
    with ``e(c, s') + e(c', s) - e(c', s')`` from seen pairs)."""
    from gouache.tiny.shapes import SHAPES

    rng = random.Random(seed)
    specs = [random_spec(rng, style=STYLES[1] if rng.random() < 0.25 else STYLES[0]) for _ in range(n)]
    p = next(encoder.parameters())
    chunks = []
    for i in range(0, n, 64):
        values = processor(images=[draw(sp) for sp in specs[i:i + 64]], return_tensors="pt")["pixel_values"]
        chunks.append(encoder(pixel_values=values.to(p.device, p.dtype)).image_embeds.double().cpu())
    embeds = torch.cat(chunks)
    mean = embeds.mean(0)

    def directions(attr: str, values) -> torch.Tensor:
        cols = [embeds[torch.tensor([getattr(sp, attr) == v for sp in specs])].mean(0) - mean for v in values
                if any(getattr(sp, attr) == v for sp in specs)]
        return torch.stack(cols, 1)

    def basis(m: torch.Tensor) -> torch.Tensor:
        u, sv, _ = torch.linalg.svd(m, full_matrices=False)
        return u[:, sv > 1e-3 * sv[0]]

    def without(m: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        q = basis(other)
        return basis(m - q @ (q.T @ m))

    colour = directions("colour", COLOURS)
    shape = torch.cat([directions("shape", SHAPES), directions("style", STYLES)], 1)
    colour_part, shape_part = without(colour, shape), without(shape, colour)
    projector = {"colour": colour_part @ colour_part.T, "shape": shape_part @ shape_part.T}
    return torch.stack([projector[part] for part in PARTS]).float()


def _copy(linear: torch.nn.Linear) -> torch.nn.Linear:
    out = torch.nn.Linear(linear.in_features, linear.out_features, bias=False)
    with torch.no_grad():
        out.weight.copy_(linear.weight)
    return out


class IPAdapterObjective(Trainer):
    """An IP-Adapter trained with the base UNet, VAE, text encoder and image encoder frozen."""

    name = "ip-adapter"
    makes = "IP-Adapters"
    sdxl_hint = " (SDXL IP-Adapters load and run)"
    config_file = "ip_adapter_config.json"
    validation_kind = "figures"

    def __init__(self, cfg: IPAdapterTrainConfig, model, dataset):
        super().__init__(cfg, model, dataset)
        self.unet, self.vae, self.text_encoder, self.tokenizer = self.frozen_base(model)
        self.encoder, self.processor = dataset
        self.modules = ip_modules(cfg, self.unet, self.encoder, self.processor)
        if cfg.init_weights is not None:
            self.modules.start_from(Path(cfg.init_weights), self.unet, model.name)
        self.loss_fn = DenoisingLoss(training_noise_scheduler(model.scheduler_config), cfg.min_snr_gamma, cfg.noise_offset)

    @classmethod
    def outputs(cls, cfg: IPAdapterTrainConfig) -> list[Path]:
        out = Path(cfg.out_dir)
        return [out / f"{cfg.name}.safetensors", out / f"{cfg.name}.json"]

    @classmethod
    def load_data(cls, cfg: IPAdapterTrainConfig, model):
        """The frozen image encoder and its processor (the items themselves are drawn per batch)."""
        from transformers import AutoConfig

        from gouache.adapters.ip_adapter import load_image_encoder, named_encoder

        folder = named_encoder(cfg.image_encoder, Path("."), "--image-encoder")
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if cfg.projection == "plus":  # the hidden states' width: a full CLIP's vision tower, or the vision model's own
            width = getattr(getattr(config, "vision_config", config), "hidden_size", 0)
        else:
            width = getattr(config, "projection_dim", 0)
        encoder, processor = load_image_encoder(folder, int(width), _kind(cfg), cfg.name)
        encoder.eval().requires_grad_(False)
        return encoder, processor

    @classmethod
    def resume_settings(cls, cfg: IPAdapterTrainConfig) -> dict[str, str]:
        # always recorded: a checkpoint written before a setting was (no key) resumes with any value, but a
        # parts run resumed as plain, or a noised one without its noise, is refused
        settings = {"--image-encoder": cfg.image_encoder, "--projection": cfg.projection,
                    "--embed-noise": f"{cfg.embed_noise:g}"}
        if cfg.init_weights is not None:
            from gouache.models.hashing import model_hash

            settings["--init-weights"] = model_hash(Path(cfg.init_weights))
        return settings

    def trainable(self):
        return self.modules

    def items(self, index: int) -> list[IPItem]:
        return [ip_item(self.cfg, index * self.cfg.batch_size + k) for k in range(self.cfg.batch_size)]

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
        """``(target latents, image embeddings, texts, the targets' whole captions)`` of batch ``index``; the
        embeddings are (N, 1, D) for the plain projection, the hidden states (N, 1, patches + 1, W) for plus."""
        from gouache.models.latents import to_latents

        items = self.items(index)
        pixels = torch.from_numpy(np.stack([np.asarray(it.target, dtype=np.float32) for it in items]) / 127.5 - 1)
        with torch.no_grad():
            latents = to_latents(self.vae, self.vae.encode(pixels.permute(0, 3, 1, 2)).latent_dist.sample())
            values = self.processor(images=[it.prompt for it in items], return_tensors="pt")["pixel_values"]
            keep = torch.tensor([0.0 if it.drop_image else 1.0 for it in items])
            if self.cfg.projection == "plus":  # a dropped image is an all-zero one, the negative generation uses
                values = values * keep[:, None, None, None]
                embeds = self.encoder(pixel_values=values, output_hidden_states=True).hidden_states[-2][:, None]
            else:  # a dropped image is a zero embedding
                embeds = self.encoder(pixel_values=values).image_embeds
                if self.cfg.embed_noise:  # unCLIP's noise augmentation: nearby embeddings, the same image
                    rms = embeds.pow(2).mean(dim=1, keepdim=True).sqrt()
                    embeds = embeds + self.cfg.embed_noise * rms * torch.randn_like(embeds)
                embeds = (embeds * keep[:, None])[:, None]
        return latents, embeds, [it.text for it in items], [it.caption for it in items]

    def loss(self, model, index):
        """The denoising loss with the adapter on. With ``distill`` the target mixes in the frozen
        base's own prediction from the target's whole caption, without the adapter: what the image
        prompt should make the model do is what the caption makes it do (the noise itself is a
        noisier target: at high noise the image cannot be told from the caption's other drawings)."""
        from gouache.adapters.ip_attention import installed

        latents, embeds, texts, whole = self.batch(index)
        with torch.no_grad():
            hidden = encode_captions(self.tokenizer, self.text_encoder, texts)
        noisy, t, target = self.loss_fn.noised(latents)
        t_in = t.to(latents.device)
        if self.cfg.distill:
            with torch.no_grad():
                captions = encode_captions(self.tokenizer, self.text_encoder, whole)
                teacher = self.unet(noisy, t_in, captions).sample
            target = (1 - self.cfg.distill) * target + self.cfg.distill * teacher
        with installed(self.unet, [getattr(model, "module", model)], [1.0]):
            pred = self.unet(noisy, t_in, hidden, added_cond_kwargs={"image_embeds": [embeds]}).sample
        return self.loss_fn.weighted(pred, target, t)

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path | None:
        """The bar on ``eval_n`` seen and held-out cases, appended to ``folder/figures.jsonl``."""
        if not self.cfg.eval_n:
            return None
        from gouache.tiny.ip_eval import ip_adapter_bars

        model.eval()
        try:
            figures = ip_adapter_bars(self.model, self.loaded(model), self.cfg.eval_n, steps=self.cfg.validation_steps)
        finally:
            model.train()
        folder.mkdir(parents=True, exist_ok=True)
        row = {"step": step, **{k: s.as_dict() for k, s in figures.items()}}
        with open(folder / "figures.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        return folder / "figures.jsonl"

    def loaded(self, modules: IPAdapterModules):
        """The adapter as it is now, as generation loads one."""
        from gouache.adapters.ip_adapter import LoadedIPAdapter

        return LoadedIPAdapter(self.cfg.name, "", Path(self.cfg.out_dir), modules.image_proj, modules.to_k, modules.to_v,
                               self.encoder, self.processor, _kind(self.cfg), modules.tokens)

    def finish(self, model, out_dir: Path) -> Path:
        return save_ip_adapter(model, self.cfg, self.model)


def ip_modules(cfg: IPAdapterTrainConfig, unet, encoder, processor) -> IPAdapterModules:
    """The modules ``cfg`` trains, for ``unet`` and the image ``encoder`` (the parts projection's
    projectors computed from it, the same each time: a resumed run and a measured checkpoint get them again)."""
    plus = cfg.projection == "plus"
    width = encoder.config.hidden_size if plus else encoder.config.projection_dim
    parts = part_projectors(encoder, processor, cfg.seed) if cfg.projection == "parts" else None
    return IPAdapterModules(unet, width, cfg.projection, parts)


def _kind(cfg: IPAdapterTrainConfig) -> str:
    """What the image encoder gives the projection (gouache.adapters.ip_adapter.image_proj_kind)."""
    return "hidden" if cfg.projection == "plus" else "embeds"


def save_ip_adapter(modules: IPAdapterModules, cfg: IPAdapterTrainConfig, base) -> Path:
    """``OUT/NAME.safetensors`` in h94's layout and ``OUT/NAME.json`` naming its image encoder, each
    written atomically; both or neither (a second that fails takes the first away again)."""
    from safetensors.torch import save

    from gouache.metadata.png import atomic_write_bytes

    weights, sidecar = IPAdapterObjective.outputs(cfg)
    meta = {"image_encoder": cfg.image_encoder, "base": base.name, "base_hash": base.hash, "tokens": modules.tokens,
            "projection": cfg.projection,
            "trained_with": f"gouache train ip-adapter shapes --steps {cfg.steps} --projection {cfg.projection}"
                            + (f" --init-weights {Path(cfg.init_weights).name}" if cfg.init_weights else "")}
    data = save(modules.h94_state(SAVE_DTYPES[cfg.save_dtype]), metadata={"format": "pt"})
    written = atomic_write_bytes(weights, data, overwrite=cfg.overwrite)
    try:
        atomic_write_bytes(sidecar, json.dumps(meta, indent=2).encode(), overwrite=cfg.overwrite)
    except OutputError:
        written.unlink(missing_ok=True)
        raise
    return written


def train_ip_adapter(cfg: IPAdapterTrainConfig, log=print) -> Path:
    """Train (or resume) an IP-Adapter; returns the weights file written."""
    return run(cfg, IPAdapterObjective, log)
