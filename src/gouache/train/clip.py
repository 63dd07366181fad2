"""``gouache train clip``: the built-in CLIP, ``gouache-tiny-clip``, trained contrastively on the shapes pairs.

A transformers ``CLIPModel``: a small ViT (64×64 images in 8×8 patches) and a small text tower with
CLIP's own BPE tokenizer (49,408 ids, the files of :mod:`gouache.models.clip_tokenizer`), trained
with CLIP's loss (``return_loss=True``) on batches of different seen captions
(:func:`gouache.tiny.pairs.training_batch`). Its bar is zero-shot rank 1 among the world's 336
captions (:func:`gouache.tiny.vision_eval.clip_rank1`).

>>> train_clip(ClipTrainConfig("shapes", "runs/tiny-clip", steps=3000))   # doctest: +SKIP
PosixPath('runs/tiny-clip/gouache-tiny-clip')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gouache.errors import check_int
from gouache.tiny.vision_eval import clip_rank1
from gouache.train.driver import run
from gouache.train.pairs import RESOLUTION, PairTrainConfig, PairTrainer, pixels

MAX_TEXT = 77  # CLIP's context: the tokenizer pads "max_length" to it


@dataclass(kw_only=True)
class ClipTrainConfig(PairTrainConfig):
    """:class:`PairTrainConfig` and the towers' sizes."""

    name: str = "gouache-tiny-clip"
    text_width: int = 64
    text_layers: int = 3
    projection_dim: int = 64
    steps: int = 3000

    TRAINS = "the built-in CLIP"
    SIZES = PairTrainConfig.SIZES + ("projection_dim",)

    def validate(self) -> None:
        super().validate()
        check_int("projection_dim", self.projection_dim, 8, 4096)


def clip_config(cfg: ClipTrainConfig):
    """The ``CLIPConfig`` of ``cfg``: CLIP's vocabulary and special ids, heads 32 wide (at least 2)."""
    from transformers import CLIPConfig

    from gouache.models.clip_tokenizer import clip_vocab_and_merges

    vocab = clip_vocab_and_merges()[0]
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    text = dict(vocab_size=len(vocab), hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
                num_hidden_layers=cfg.text_layers, num_attention_heads=max(cfg.text_width // 32, 2),
                max_position_embeddings=MAX_TEXT, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    vision = dict(image_size=RESOLUTION, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
                  intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                  num_attention_heads=max(cfg.vision_width // 32, 2))
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)


def clip_processor(folder: Path):
    """A ``CLIPProcessor`` for 64×64 images with CLIP's tokenizer (its files written into ``folder``)."""
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    from gouache.models.clip_tokenizer import write_tokenizer_files

    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer_files(folder))
    images = CLIPImageProcessor(size={"shortest_edge": RESOLUTION}, crop_size={"height": RESOLUTION, "width": RESOLUTION})
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)


class ClipTrainer(PairTrainer):
    """CLIP's contrastive loss on batches of different captions."""

    name = "clip"
    makes = "CLIP models"
    config_file = "clip_config.json"
    measure = staticmethod(clip_rank1)

    def build(self, cfg: ClipTrainConfig):
        from transformers import CLIPModel

        return CLIPModel(clip_config(cfg)), clip_processor(Path(cfg.out_dir) / "processor")

    @classmethod
    def resume_settings(cls, cfg: ClipTrainConfig) -> dict[str, str]:
        return cfg.sizes()

    def loss(self, model, index: int):
        items = self.dataset(index)
        text = self.processor.tokenizer([it.caption for it in items], padding=True, return_tensors="pt")
        return model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels(items),
                     return_loss=True).loss


def train_clip(cfg: ClipTrainConfig, log=print) -> Path:
    """Train (or resume) the built-in CLIP; returns the transformers folder written."""
    return run(cfg, ClipTrainer, log)
