"""``gouache train captioner``: the built-in captioner, ``gouache-tiny-captioner``, trained to write the shapes captions.

A transformers ``BlipForConditionalGeneration``: a small ViT (64×64 images in 8×8 patches) and a
small text decoder that attends to it, with a ``BlipProcessor`` whose tokenizer is a BERT WordPiece
tokenizer over a vocabulary of the world's own words and BERT's special tokens
(:func:`write_vocab`). It is trained with teacher forcing (the decoder's cross-entropy on the next
word, half the colours and shapes it reads swapped: :meth:`CaptionerTrainer.swap_words`) to write each image's caption (:attr:`gouache.tiny.shapes.ShapeSpec.caption`); its bar is the
exact caption under greedy decoding (:func:`gouache.tiny.vision_eval.caption_exact`).

>>> train_captioner(CaptionerTrainConfig("shapes", "runs/tiny-captioner"))   # doctest: +SKIP
PosixPath('runs/tiny-captioner/gouache-tiny-captioner')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gouache.errors import check_number
from gouache.tiny.vision_eval import caption_exact
from gouache.train.driver import run
from gouache.train.pairs import RESOLUTION, PairTrainConfig, PairTrainer, pixels

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_TEXT = 32  # the longest caption is 12 tokens with [CLS] and [SEP]


@dataclass(kw_only=True)
class CaptionerTrainConfig(PairTrainConfig):
    """:class:`PairTrainConfig` and the model's sizes."""

    name: str = "gouache-tiny-captioner"
    steps: int = 4000
    batch_size: int = 64
    word_noise: float = 0.5  # fraction of the colours and shapes the decoder reads swapped for random ones (targets stay)
    round_trip: float = 0.0  # fraction of each batch's images passed through gouache-tiny's VAE (encode, decode)
    grey: float = 0.0  # fraction of each batch's images (the last ones) drawn in greys, their colour words not taught

    TRAINS = "the built-in captioner"
    SIZES = PairTrainConfig.SIZES + ("word_noise", "round_trip", "grey")

    def validate(self) -> None:
        super().validate()
        check_number("word_noise", self.word_noise, 0, 1, " (the fraction of input colours and shapes swapped)")
        check_number("round_trip", self.round_trip, 0, 1, " (the fraction of images passed through the VAE)")
        check_number("grey", self.grey, 0, 1, " (the fraction of images drawn in greys)")


def words() -> list[str]:
    """Every word (and punctuation mark) of the world's captions, in a fixed order."""
    from gouache.tiny.shapes import COLOURS, SHAPES, STYLES

    return [",", ".", "a", "on", "background", "style", *COLOURS, *SHAPES, *STYLES]


def write_vocab(folder: Path) -> Path:
    """``vocab.txt`` for a BERT tokenizer: BERT's special tokens, then :func:`words`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join([*SPECIALS, *words()]) + "\n", encoding="utf-8")
    return path


def captioner_processor(folder: Path):
    """A ``BlipProcessor`` for 64×64 images whose tokenizer reads the world's vocabulary (written into ``folder``)."""
    from transformers import BertTokenizerFast, BlipImageProcessor, BlipProcessor

    write_vocab(folder)
    tokenizer = BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=MAX_TEXT,
                                                  clean_up_tokenization_spaces=True)
    images = BlipImageProcessor(size={"height": RESOLUTION, "width": RESOLUTION})
    return BlipProcessor(image_processor=images, tokenizer=tokenizer)


def blip_config(cfg: CaptionerTrainConfig, tokenizer):
    """The ``BlipConfig`` of ``cfg``: the decoder starts at [CLS] and stops at [SEP], as the tokenizer writes them."""
    from transformers import BlipConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    text = dict(vocab_size=len(tokenizer), hidden_size=cfg.text_width, encoder_hidden_size=cfg.vision_width,
                intermediate_size=4 * cfg.text_width, num_hidden_layers=cfg.text_layers,
                num_attention_heads=max(cfg.text_width // 32, 2), max_position_embeddings=MAX_TEXT,
                bos_token_id=ids["[CLS]"], eos_token_id=ids["[SEP]"], sep_token_id=ids["[SEP]"],
                pad_token_id=ids["[PAD]"], label_smoothing=0.0)
    vision = dict(image_size=RESOLUTION, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
                  intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                  num_attention_heads=max(cfg.vision_width // 32, 2))
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=cfg.text_width)


class CaptionerTrainer(PairTrainer):
    """The decoder's next-word cross-entropy on each image's caption (teacher forcing)."""

    name = "captioner"
    makes = "captioners"
    config_file = "captioner_config.json"
    measure = staticmethod(caption_exact)

    def build(self, cfg: CaptionerTrainConfig):
        from transformers import BlipForConditionalGeneration

        processor = captioner_processor(Path(cfg.out_dir) / "processor")
        return BlipForConditionalGeneration(blip_config(cfg, processor.tokenizer)), processor

    @classmethod
    def resume_settings(cls, cfg: CaptionerTrainConfig) -> dict[str, str]:
        return cfg.sizes()

    @classmethod
    def load_data(cls, cfg: CaptionerTrainConfig, model):
        batches = super().load_data(cfg, model)
        if not cfg.round_trip:
            return batches
        from gouache.pipelines.model import load_model
        from gouache.speed import SpeedSettings

        vae = load_model(None, speed=SpeedSettings.reference()).pipeline.vae.eval()
        return lambda index: round_trip(vae, batches(index), cfg.round_trip)

    def loss(self, model, index: int):
        items = self.dataset(index)
        text = self.processor.tokenizer([it.caption for it in items], padding=True, return_tensors="pt")
        labels = text["input_ids"].masked_fill(text["attention_mask"] == 0, -100)
        items, labels = self.grey_items(items, labels, index)
        inputs = self.swap_words(text["input_ids"], index)
        return model(pixel_values=pixels(items), input_ids=inputs, attention_mask=text["attention_mask"],
                     labels=labels).loss

    def grey_items(self, items: list, labels, index: int):
        """The last ``grey`` of ``items`` drawn in two random greys (:func:`gouache.tiny.masks.grey`),
        with their colour words left out of the loss (a grey image does not say them). The images'
        colours otherwise answer for the shape (a held-out pair's colour was never seen with its
        shape, so it vetoes it); in greys the shape is read from the outline alone."""
        k = round(len(items) * self.cfg.grey)
        if not k:
            return items, labels
        import dataclasses
        import random

        from gouache.tiny.masks import coverage, grey
        from gouache.tiny.shapes import COLOURS

        rng = random.Random(self.cfg.seed * 1_000_003 + index + 17)
        colour_ids = torch.tensor(self.processor.tokenizer.convert_tokens_to_ids(list(COLOURS)))
        labels = labels.clone()
        out = list(items)
        for i in range(len(items) - k, len(items)):
            out[i] = dataclasses.replace(items[i], image=grey(coverage(items[i].image, items[i].spec), rng))
            labels[i][torch.isin(labels[i], colour_ids)] = -100
        return out, labels

    def swap_words(self, ids, index: int):
        """``ids`` with ``word_noise`` of its colours and shapes swapped for a random colour or shape, drawn
        from the batch's index. The words the decoder reads then say nothing about the next one (in the
        data a colour is never followed by its held-out shape, and would veto that shape), so it reads
        each colour and shape from the image: what lets it name held-out colour-shape pairs."""
        from gouache.tiny.shapes import COLOURS, SHAPES

        tok = self.processor.tokenizer
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + index)
        out = ids.clone()
        for kind in (COLOURS, SHAPES):
            kind_ids = torch.tensor(tok.convert_tokens_to_ids(list(kind)))
            where = torch.isin(ids, kind_ids) & (torch.rand(ids.shape, generator=g) < self.cfg.word_noise)
            out[where] = kind_ids[torch.randint(len(kind_ids), (int(where.sum()),), generator=g)]
        return out


@torch.no_grad()
def round_trip(vae, items: list, fraction: float) -> list:
    """``items`` with the first ``fraction`` of their images replaced by the VAE's reconstruction (the
    latents' mean, decoded): the softened edges and colours of gouache-tiny's generations, which a
    captioner trained on clean renders alone reads worse (the images it is asked about are generated)."""
    import dataclasses

    import numpy as np
    from PIL import Image

    k = round(len(items) * fraction)
    if not k:
        return items
    arr = np.stack([np.asarray(it.image.convert("RGB"), dtype=np.float32) for it in items[:k]]) / 127.5 - 1.0
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).to(vae.dtype)
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample.float()
    px = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [dataclasses.replace(it, image=Image.fromarray(p)) for it, p in zip(items, px)] + items[k:]


def train_captioner(cfg: CaptionerTrainConfig, log=print) -> Path:
    """Train (or resume) the built-in captioner; returns the transformers folder written."""
    return run(cfg, CaptionerTrainer, log)
