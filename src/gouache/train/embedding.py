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
from dataclasses import dataclass
from pathlib import Path

import torch

from gouache.errors import InvalidArgument, check_int
from gouache.prompts.chunks import EmbeddingMatch
from gouache.train.config import TrainConfig
from gouache.train.diffusion import DenoisingLoss, FolderLatents, drop_captions, training_noise_scheduler
from gouache.train.processes import sharded
from gouache.train.driver import Trainer, image_folder, run

A1111_STAR_TOKEN = 265  # CLIP's id of "*", the constant key A1111's files carry


@dataclass(kw_only=True)
class EmbeddingTrainConfig(TrainConfig):
    """:class:`~gouache.train.config.TrainConfig` and the token it trains. Validation prompts should
    contain the token."""

    token: str = "<token>"
    init_word: str = "*"
    num_vectors: int = 1
    lr: float = 5e-3

    TRAINS = "textual inversion"

    @property
    def name(self) -> str:
        """The files' stem: the token without its brackets (``<sks>`` → ``sks``)."""
        return re.sub(r"[^\w.\-]", "", self.token) or "embedding"

    def validate(self) -> None:
        super().validate()
        if not self.token.strip() or any(c.isspace() for c in self.token):
            raise InvalidArgument(f"`token` must be one word without spaces, e.g. \"<my-style>\"; got {self.token!r}")
        check_int("num_vectors", self.num_vectors, 1, 75)
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


class EmbeddingObjective(Trainer):
    """The token's vectors, everything else frozen, trained with the denoising loss."""

    name = "embedding"
    makes = "embeddings"
    config_file = "embedding_config.json"

    def __init__(self, cfg: EmbeddingTrainConfig, model, dataset):
        from gouache.prompts.encode import PromptEncoder

        super().__init__(cfg, model, dataset)
        pipe = model.pipeline
        for m in (pipe.unet, pipe.text_encoder, pipe.vae):
            m.requires_grad_(False).eval()
        self.holder = torch.nn.Module()
        self.holder.vectors = torch.nn.Parameter(self._initial_vectors(pipe.tokenizer, pipe.text_encoder))
        self.encoder = PromptEncoder(model, embeddings=_Vectors(cfg.token, self.holder.vectors))
        self.loss_fn = DenoisingLoss(training_noise_scheduler(model.scheduler_config), cfg.min_snr_gamma, cfg.noise_offset)
        self.latents = FolderLatents(model.vae, dataset, cache=cfg.cache_latents)

    @classmethod
    def outputs(cls, cfg: EmbeddingTrainConfig) -> list[Path]:
        return list(output_paths(cfg, cfg.out_dir))

    @classmethod
    def load_data(cls, cfg: EmbeddingTrainConfig, model):
        """The image folder, every caption of which must contain the token."""
        dataset = image_folder(cfg, model)
        check_captions([caption for _, caption in dataset.items], cfg.token, model.pipeline.tokenizer)
        return dataset

    @classmethod
    def resume_settings(cls, cfg: EmbeddingTrainConfig) -> dict[str, str]:
        return {"--token": cfg.token, "--num-vectors": str(cfg.num_vectors)}

    def _initial_vectors(self, tokenizer, text_encoder) -> torch.Tensor:
        ids = tokenizer(self.cfg.init_word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise InvalidArgument(f"`init_word` {self.cfg.init_word!r} has no tokens")
        table = text_encoder.get_input_embeddings().weight.detach()
        return torch.stack([table[ids[i % len(ids)]].clone().float() for i in range(self.cfg.num_vectors)])

    def trainable(self):
        return self.holder

    @sharded
    def loss(self, model, index):
        latents, captions = self.latents.batch(index, self.cfg.batch_size, self.shard)
        captions = drop_captions(captions, self.cfg.caption_dropout, index, self.shard)
        hidden = torch.cat([self.encoder.encode_for_training(spaced(c, self.cfg.token)).hidden for c in captions])
        return self.loss_fn(self.model.unet, latents, hidden, shard=self.shard)

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
    return run(cfg, EmbeddingObjective, log)
