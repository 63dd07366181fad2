"""Tiny random-weight captioning models of each family's exact architecture, written offline.

No real weights can be fetched here, so each helper builds the family's transformers classes from a
small config (hidden size 32, one or two layers, 32-pixel images) and a tokenizer made from a
20-word vocabulary, and saves model + processor with ``save_pretrained``: a folder that
``load_captioner`` reads exactly as it reads a real download. Captions are gibberish; the tests
check the plumbing (loading offline, prompts, batching, decoding), not caption quality.

Tests here use the session fixtures below; tests elsewhere load this file by path (pytest's importlib
mode keeps it off ``sys.path``), as tests/cli/test_caption.py does, and call the ``write_tiny_*`` helpers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = "a cat dog on the grass red blue sits in photo of image describe this one sentence . , :".split()
LLAVA_TEMPLATE = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
                  "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
                  "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def word_tokenizer(image_token: bool = True):
    """A fast word-level tokenizer over WORDS: ``<s>`` begins, ``</s>`` ends; with ``image_token`` it has
    ``<image>`` as a special token (LLaVA's), else the processor adds its own (BLIP-2's does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"] + (["<image>"] if image_token else [])
    vocab = {t: i for i, t in enumerate([*specials, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if image_token else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", **extra)


def _small_llama(vocab_size: int) -> dict:
    return dict(model_type="llama", vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=1,
                bos_token_id=2, eos_token_id=3)


def _small_clip_vision() -> dict:
    return dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32)


def write_tiny_blip(folder: Path) -> Path:
    """BLIP (``BlipForConditionalGeneration`` + ``BlipProcessor``) with a BERT word-piece tokenizer."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")  # BLIP's decoder starts from [DEC]
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    torch.manual_seed(0)
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
                         bos_token_id=vocab["[DEC]"], pad_token_id=0, sep_token_id=vocab["[SEP]"],
                         eos_token_id=vocab["[SEP]"]),
        projection_dim=32)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_blip2(folder: Path) -> Path:
    """BLIP-2 (``Blip2ForConditionalGeneration``: ViT, Q-Former, OPT) with a word-level tokenizer."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    tokenizer = word_tokenizer(image_token=False)
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                               tokenizer=tokenizer, num_query_tokens=4)
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        qformer_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                         num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=128,
                         pad_token_id=1, bos_token_id=2, eos_token_id=3),
        num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():  # random OPT likes to repeat <s>; make special tokens unlikely so captions have words
        model.get_output_embeddings().weight[tokenizer.all_special_ids] = 0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_llava(folder: Path, chat_template: bool = True) -> Path:
    """LLaVA 1.5 (``LlavaForConditionalGeneration``: CLIP vision tower, projector, Llama) and its processor;
    with ``chat_template`` the processor carries a LLaVA-style template, else the plain prompt is used."""
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = word_tokenizer()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_TEMPLATE if chat_template else None)
    torch.manual_seed(0)
    config = LlavaConfig(vision_config=_small_clip_vision(), text_config=_small_llama(len(tokenizer)),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-2)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_llava_next(folder: Path) -> Path:
    """LLaVA-NeXT (``LlavaNextForConditionalGeneration``: any-resolution tiles of 32 pixels) and its processor."""
    import torch
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor,
                              LlavaNextProcessor)

    tokenizer = word_tokenizer()
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                              image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_TEMPLATE)
    torch.manual_seed(0)
    config = LlavaNextConfig(vision_config=_small_clip_vision(), text_config=_small_llama(len(tokenizer)),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=pinpoints, vision_feature_select_strategy="default",
                             vision_feature_layer=-2)
    LlavaNextForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_vipllava(folder: Path) -> Path:
    """ViP-LLaVA, a family gouache does not name: it loads through ``AutoModelForImageTextToText``."""
    import torch
    from transformers import CLIPImageProcessor, LlavaProcessor, VipLlavaConfig, VipLlavaForConditionalGeneration

    tokenizer = word_tokenizer()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = VipLlavaConfig(vision_config=_small_clip_vision(), text_config=_small_llama(len(tokenizer)),
                            image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layers=[-2, -1])
    VipLlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


WRITERS = {"blip": write_tiny_blip, "blip-2": write_tiny_blip2, "llava": write_tiny_llava,
           "llava_next": write_tiny_llava_next, "vipllava": write_tiny_vipllava}


@pytest.fixture(scope="session")
def tiny_captioners(tmp_path_factory) -> dict[str, Path]:
    """One tiny model folder per family, written once per session: family name -> folder."""
    root = tmp_path_factory.mktemp("captioners")
    return {family: write(root / family.replace("-", "")) for family, write in WRITERS.items()}


@pytest.fixture(scope="session")
def tiny_llava_plain(tmp_path_factory) -> Path:
    """LLaVA 1.5 whose processor has no chat template (older downloads): the plain USER/ASSISTANT prompt."""
    return write_tiny_llava(tmp_path_factory.mktemp("llava-plain") / "llava", chat_template=False)


# -- CLIP (gouache.vision.clip, interrogate): a tiny random CLIPModel ---------------------------------
# Quality is not checked, only shapes, normalisation, ranking and the doors' behaviour; tests elsewhere
# load this file by path and call write_tiny_clip.


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A ``CLIPModel`` of hidden size 32, one layer per tower, 32 px images in 8 px patches, with
    gouache's CLIP tokenizer files and no ``preprocessor_config.json`` (the loader derives it)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from gouache.models.clip_tokenizer import write_tokenizer_files

    torch.manual_seed(seed)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(vocab_size=49408, max_position_embeddings=77, **tower),
                        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    write_tokenizer_files(folder)
    return Path(folder)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """The folder of a tiny random CLIP (written once per session)."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    """The tiny CLIP, loaded once per session."""
    from gouache.vision.clip import load_clip

    return load_clip(tiny_clip_dir)


@pytest.fixture
def shapes_images():
    """Four 48×48 images of distinct flat colours and shapes."""
    from PIL import Image, ImageDraw

    images = []
    for fill, box in (("red", (8, 8, 40, 40)), ("blue", (0, 0, 24, 48)), ("green", (20, 4, 44, 30)), ("yellow", (4, 24, 44, 44))):
        im = Image.new("RGB", (48, 48), "white")
        ImageDraw.Draw(im).ellipse(box, fill=fill)
        images.append(im)
    return images


def write_tiny_clipseg(folder: Path) -> Path:
    """CLIPSeg (``CLIPSegForImageSegmentation`` + ``CLIPSegProcessor``) as CIDAS' ``clipseg-rd64-refined`` is
    laid out (the same classes, files and key names), with CLIP's tokenizer and 32-pixel images."""
    import torch
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizer,
                              ViTImageProcessor)

    from gouache.models.clip_tokenizer import write_tokenizer_files

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer_files(folder / "tokenizer"))
    processor = CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 32, "width": 32}),
                                 tokenizer=tokenizer)
    torch.manual_seed(0)
    config = CLIPSegConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=32, extract_layers=[0, 1], reduce_dim=16, decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clipseg(tmp_path_factory) -> Path:
    return write_tiny_clipseg(tmp_path_factory.mktemp("segmenters") / "tiny-clipseg")
