"""The CLIP tokenizer built from the openai-clip vocabulary gives CLIP's own ids."""

import importlib.util
from pathlib import Path

import pytest

from gouache.models.clip_tokenizer import load_clip_tokenizer


def clip_reference():
    """openai-clip's own tokenizer module, loaded from its file (the package's __init__ needs more)."""
    spec = importlib.util.find_spec("clip")
    path = Path(list(spec.submodule_search_locations)[0]) / "simple_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


@pytest.mark.parametrize(
    "text",
    ["a purple triangle on a yellow background", "masterpiece, (best quality:1.2), 8k uhd",
     "ünïcode café naïve 日本語 emoji 🎨", "a-b_c/d.e!?", "UPPER lower MiXeD"],
)
def test_same_ids_as_clip(text):
    ours = load_clip_tokenizer()(text, add_special_tokens=False).input_ids
    assert ours == clip_reference().encode(text)


def test_special_tokens_and_padding():
    tok = load_clip_tokenizer()
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, len(tok)) == (49406, 49407, 49407, 49408)
    assert load_clip_tokenizer(pad_token="!").pad_token_id == 0
