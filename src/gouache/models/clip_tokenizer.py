"""CLIP's byte-level BPE tokenizer files, built offline from the vocabulary the `openai-clip` package ships.

Stable Diffusion 1.x/2.x and SDXL all tokenize with CLIP's BPE (49,408 ids). Checkpoints that come
as a single file do not carry a tokenizer, and there is no hub to fetch one from, so we derive
``vocab.json`` and ``merges.txt`` — the files ``transformers.CLIPTokenizer`` reads — from
``clip/bpe_simple_vocab_16e6.txt.gz``. The id layout (256 byte symbols, the same with ``</w>``,
48,894 merges, then ``<|startoftext|>`` and ``<|endoftext|>``) is CLIP's.

>>> folder = write_tokenizer_files("/tmp/tok")          # doctest: +SKIP
>>> CLIPTokenizer.from_pretrained(folder)("a red circle").input_ids   # doctest: +SKIP
[49406, 320, 736, 7117, 49407]
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from gouache.errors import ModelLoadError

N_MERGES = 49152 - 256 - 2  # CLIP keeps this many merges of the file's list
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP's 256 byte symbols (bytes mapped to printable characters), in CLIP's id order."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]  # CLIP's id order: printable bytes first, then the rest


def _vocab_file() -> Path:
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the CLIP vocabulary is missing: install the `openai-clip` package (pip install openai-clip)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise ModelLoadError(f"the CLIP vocabulary file is missing from the openai-clip package: {path}")
    return path


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's token → id map and its ordered merge list."""
    lines = gzip.open(_vocab_file(), "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : N_MERGES + 1]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer_files(folder: str | os.PathLike, pad_token: str = EOS) -> Path:
    """Write a complete ``CLIPTokenizer`` folder; SD 1.x pads with ``<|endoftext|>``, SD 2.x with ``!``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "special_tokens_map.json": json.dumps(
            {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
        ),
        "tokenizer_config.json": json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": BOS,
                "eos_token": EOS,
                "unk_token": EOS,
                "pad_token": pad_token,
                "do_lower_case": True,
                "errors": "replace",
                "add_prefix_space": False,
                "clean_up_tokenization_spaces": True,
            }
        ),
    }
    for name, text in files.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
    return folder


def load_clip_tokenizer(pad_token: str = EOS):
    """A ``transformers.CLIPTokenizer`` built from the shipped vocabulary (cached on disk per process)."""
    import tempfile

    from transformers import CLIPTokenizer

    folder = Path(tempfile.gettempdir()) / f"gouache-clip-tokenizer-{os.getuid()}-{ord(pad_token[0])}"
    if not (folder / "tokenizer_config.json").is_file():
        write_tokenizer_files(folder, pad_token)
    return CLIPTokenizer.from_pretrained(folder)
