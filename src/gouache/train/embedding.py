"""``gouache train embedding``: textual inversion — new token vectors, everything else frozen.

The token (``--token "<name>"``) takes ``num_vectors`` vectors, started from the embedding of
``--init-word``. Captions are encoded by the same code that encodes prompts at generation time
(:class:`gouache.prompts.encode.PromptEncoder` with an embedding lookup), so the vectors are trained
exactly where they will be used. Only the vectors receive gradients; the UNet, VAE and text encoder
stay as they are, and the loss is the denoising loss of :mod:`gouache.train.diffusion`.

Two files are written, both usable by writing the token (or the file's stem) in a prompt:

* ``NAME.safetensors``: diffusers' layout, ``{"<name>": tensor[num_vectors, width]}``;
* ``NAME.pt``: AUTOMATIC1111's layout (``string_to_param``, ``name``, ``step``, ``sd_checkpoint``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gouache.errors import InvalidArgument, OutputError
from gouache.prompts.chunks import EmbeddingMatch
from gouache.train.diffusion import DenoisingLoss, training_noise_scheduler
from gouache.train.loop import ObjectiveBase

A1111_STAR_TOKEN = 265  # CLIP's id of "*", the constant key A1111's files carry


@dataclass
class EmbeddingTrainConfig:
    dataset: Path
    out_dir: Path
    token: str = "<token>"
    init_word: str = "*"
    num_vectors: int = 1
    base: str | None = None
    steps: int = 1000
    batch_size: int = 4
    lr: float = 5e-3
    warmup_steps: int = 50
    grad_accum: int = 1
    mixed_precision: str = "no"
    resolution: int | None = None
    crop: str = "center"
    flip: bool = False
    min_snr_gamma: float = 0.0
    noise_offset: float = 0.0
    checkpoint_every: int = 0
    checkpoint_minutes: float = 5.0
    validation_prompts: list[str] = field(default_factory=list)  # they should contain the token
    validation_every: int = 0
    validation_seed: int = 0
    validation_steps: int = 20
    seed: int = 0
    overwrite: bool = False
    resume: bool = False  # runs continue from their last checkpoint anyway; True: fail if there is none

    @property
    def name(self) -> str:
        """The files' stem: the token without its brackets (``<sks>`` → ``sks``)."""
        return re.sub(r"[^\w.\-]", "", self.token) or "embedding"

    def validate(self) -> None:
        if not self.token.strip() or any(c.isspace() for c in self.token):
            raise InvalidArgument(f"`token` must be one word without spaces, e.g. \"<my-style>\"; got {self.token!r}")
        if not 1 <= self.num_vectors <= 75:
            raise InvalidArgument(f"`num_vectors` must be from 1 to 75, got {self.num_vectors}")
        if not self.init_word.strip():
            raise InvalidArgument("`init_word` must not be empty; give a word close to the concept, e.g. \"circle\"")


class _Vectors:
    """The token being trained, as an embedding lookup for :class:`PromptEncoder`."""

    def __init__(self, token: str, vectors: torch.nn.Parameter):
        self.token, self.vectors = token, vectors

    def lookup(self, tokenizer, width: int):
        ids = tokenizer(self.token, add_special_tokens=False)["input_ids"]

        def find(tokens, position):
            if list(tokens[position : position + len(ids)]) == ids:
                return EmbeddingMatch(self.vectors, self.vectors.shape[0], len(ids))
            return None

        return find


def spaced(caption: str, token: str) -> str:
    """``caption`` with a space between the token and any text touching it (``<cats>, a`` → ``<cats> , a``).

    CLIP's tokenizer reads ``<cats>,`` as other tokens than ``<cats>`` (``>`` then ``,</w>`` rather than
    ``></w>``: the word ends at the comma), so the token would not be found there; as a word of its
    own it tokenizes as it does alone.
    """
    t = re.escape(token)
    return re.sub(rf"(?<=\S)(?={t})|(?<={t})(?=\S)", " ", caption)


def check_captions(captions: list[str], token: str, tokenizer) -> None:
    """Every caption must name the token (as its own tokens once :func:`spaced`): one
    :class:`InvalidArgument` before training, rather than vectors that never receive a gradient."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]

    def names(caption):
        tokens = tokenizer(spaced(caption, token), add_special_tokens=False)["input_ids"]
        return any(tokens[i : i + len(ids)] == ids for i in range(len(tokens) - len(ids) + 1))

    missing = [c for c in captions if not names(c)]
    if len(missing) == len(captions):
        raise InvalidArgument(f"no caption contains the token {token!r} (e.g. {missing[0]!r}); prepare the dataset "
                              f"with --prefix \"{token}\" or write captions that name it, or pass the --token they use")
    if missing:
        raise InvalidArgument(f"{len(missing)} of {len(captions)} captions do not contain the token {token!r}, e.g. "
                              f"{missing[0]!r}; prepare the dataset with --prefix \"{token}\" or captions that name it")


class EmbeddingObjective(ObjectiveBase):
    name = "embedding"

    def __init__(self, cfg: EmbeddingTrainConfig, model, dataset):
        from gouache.prompts.encode import PromptEncoder
        self.cfg, self.model, self.dataset = cfg, model, dataset
        pipe = model.pipeline
        for m in (pipe.unet, pipe.text_encoder, pipe.vae):
            m.requires_grad_(False).eval()
        self.holder = torch.nn.Module()
        self.holder.vectors = torch.nn.Parameter(self._initial_vectors(pipe.tokenizer, pipe.text_encoder))
        self.encoder = PromptEncoder(model, embeddings=_Vectors(cfg.token, self.holder.vectors))
        self.loss_fn = DenoisingLoss(training_noise_scheduler(model.scheduler_config), cfg.min_snr_gamma, cfg.noise_offset)

    def _initial_vectors(self, tokenizer, text_encoder) -> torch.Tensor:
        ids = tokenizer(self.cfg.init_word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InvalidArgument(f"`init_word` {self.cfg.init_word!r} has no tokens")
        table = text_encoder.get_input_embeddings().weight.detach()
        return torch.stack([table[ids[i % len(ids)]].clone().float() for i in range(self.cfg.num_vectors)])

    def trainable(self):
        return self.holder

    def loss(self, model, index):
        pixels, captions = self.dataset.batch(index, self.cfg.batch_size)
        vae = self.model.vae
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        hidden = torch.cat([self.encoder.encode_for_training(spaced(c, self.cfg.token)).hidden for c in captions])
        return self.loss_fn(self.model.unet, latents, hidden)

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path | None:
        """A grid of the validation prompts at their seeds, with the vectors as they are now (written
        to ``folder/.vectors`` and used like any embedding file)."""
        import dataclasses

        from safetensors.torch import save

        from gouache.adapters.embeddings import EmbeddingLibrary
        from gouache.metadata.png import atomic_write_bytes
        from gouache.train.lora import validation_grid

        if not self.cfg.validation_prompts:
            return None
        vectors = model.vectors.detach().float().cpu().contiguous()
        atomic_write_bytes(folder / ".vectors" / f"{self.cfg.name}.safetensors", save({self.cfg.token: vectors}),
                           overwrite=True)
        current = dataclasses.replace(self.model, embeddings=EmbeddingLibrary.scan(folder / ".vectors"))
        prompts = [spaced(p, self.cfg.token) for p in self.cfg.validation_prompts]  # as the captions are read
        return validation_grid(current, prompts, self.cfg.validation_seed,
                               self.cfg.validation_steps, folder / f"step-{step:06d}.png", model)

    def finish(self, model, out_dir: Path) -> Path:
        return save_embedding(self.cfg, model.vectors.detach().float().cpu(), self.model, out_dir)


def output_paths(cfg: EmbeddingTrainConfig, out_dir: Path) -> tuple[Path, Path]:
    return Path(out_dir) / f"{cfg.name}.safetensors", Path(out_dir) / f"{cfg.name}.pt"


def save_embedding(cfg: EmbeddingTrainConfig, vectors: torch.Tensor, model, out_dir: Path) -> Path:
    """Write the diffusers ``.safetensors`` and the A1111 ``.pt``; returns the first."""
    import io

    from safetensors.torch import save

    from gouache.metadata.png import atomic_write_bytes

    st, pt = output_paths(cfg, out_dir)
    meta = {"format": "pt", "token": cfg.token, "init_word": cfg.init_word, "steps": str(cfg.steps),
            "base_model": model.name, "base_model_hash": model.hash}
    atomic_write_bytes(st, save({cfg.token: vectors.contiguous()}, metadata=meta), overwrite=cfg.overwrite)
    buf = io.BytesIO()
    torch.save({"string_to_token": {"*": A1111_STAR_TOKEN}, "string_to_param": {"*": vectors.clone()},
                "name": cfg.token, "step": cfg.steps, "sd_checkpoint": model.hash, "sd_checkpoint_name": model.name}, buf)
    atomic_write_bytes(pt, buf.getvalue(), overwrite=cfg.overwrite)
    return st


def train_embedding(cfg: EmbeddingTrainConfig, log=print) -> Path:
    """Train (or resume) a textual-inversion embedding; returns the ``.safetensors`` written."""
    from gouache.data.folder import ImageFolderDataset
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings
    from gouache.train.checkpoints import check_settings
    from gouache.train.loop import LoopConfig, train, write_config

    cfg.validate()
    loop = LoopConfig(Path(cfg.out_dir), cfg.steps, cfg.lr, warmup_steps=cfg.warmup_steps, grad_accum=cfg.grad_accum,
                      mixed_precision=cfg.mixed_precision, checkpoint_minutes=cfg.checkpoint_minutes,
                      checkpoint_every=cfg.checkpoint_every, seed=cfg.seed, log_every=max(cfg.steps // 20, 1),
                      resume=cfg.resume, validate_every=cfg.validation_every)
    loop.validate()
    for path in output_paths(cfg, cfg.out_dir):
        if path.exists() and not cfg.overwrite:
            raise OutputError(f"{path} exists; choose another --out, or pass --overwrite")
    model = load_model(cfg.base, speed=SpeedSettings.reference())  # trainers keep fp32 weights
    if model.is_sdxl:
        raise InvalidArgument(f"{model.name} is an SDXL model; `gouache train embedding` trains SD 1.x and 2.x embeddings so far")
    dataset = ImageFolderDataset(Path(cfg.dataset), cfg.resolution or model.native_size, crop=cfg.crop, flip=cfg.flip,
                                 seed=cfg.seed)
    check_captions([caption for _, caption in dataset.items], cfg.token, model.pipeline.tokenizer)  # before any file
    loop.settings = {"--base": model.name, "base model hash": model.hash, "--token": cfg.token,
                     "--num-vectors": str(cfg.num_vectors)}
    check_settings(Path(cfg.out_dir) / "checkpoints", loop.settings, Path(cfg.out_dir))  # before embedding_config.json
    write_config(Path(cfg.out_dir) / "embedding_config.json", cfg)
    return train(EmbeddingObjective(cfg, model, dataset), loop, log)
