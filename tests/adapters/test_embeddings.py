"""Textual-inversion embeddings: every common file format, and their use by name in a prompt."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from gouache.adapters.embeddings import EmbeddingLibrary, read_embedding
from gouache.errors import ModelLoadError
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.prompts.encode import PromptEncoder

V = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 64) / 100


def write(path, data):
    if path.suffix == ".safetensors":
        save_file(data, str(path))
    else:
        torch.save(data, path)
    return path


@pytest.mark.parametrize(
    "filename,data,expected",
    [
        ("a1111.pt", {"string_to_token": {"*": 265}, "string_to_param": {"*": V}, "name": "x", "step": 10}, {"": V}),
        ("other.safetensors", {"emb_params": V}, {"": V}),
        ("diffusers.bin", {"<cat-toy>": V[0]}, {"": V[:1]}),
        ("sdxl.safetensors", {"clip_l": torch.ones(3, 768), "clip_g": torch.zeros(3, 1280)},
         {"clip_l": torch.ones(3, 768), "clip_g": torch.zeros(3, 1280)}),
    ],
)
def test_formats(tmp_path, filename, data, expected):
    e = read_embedding(write(tmp_path / filename, data))
    assert e.name == filename.rsplit(".", 1)[0]  # the prompt word is the file's stem
    assert e.vectors.keys() == expected.keys()
    assert all(torch.equal(e.vectors[k], expected[k]) for k in expected)


@pytest.mark.parametrize(
    "filename,content,message",
    [
        ("broken.safetensors", b"\x00" * 50, "cannot read the embedding"),
        ("two.safetensors", None, "not a textual-inversion embedding"),
        ("notes.txt", b"hello", "not an embedding file"),
    ],
)
def test_bad_files(tmp_path, filename, content, message):
    path = tmp_path / filename
    if content is None:
        save_file({"a": V.clone(), "b": V.clone()}, str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        read_embedding(path)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"string_to_param": Evil()}))
    with pytest.raises(ModelLoadError):
        read_embedding(path)


def test_prompt_word_puts_the_vectors_in(tiny_model, tmp_path):
    write(tmp_path / "shapesy.safetensors", {"emb_params": V})
    lib = EmbeddingLibrary.scan(tmp_path)
    enc = PromptEncoder(tiny_model, embeddings=lib)
    tok, te = tiny_model.pipeline.tokenizer, tiny_model.pipeline.text_encoder
    (chunk,) = enc.chunks(tok, te, "a shapesy circle")
    assert chunk.ids[:5] == [49406, 320, 0, 0, 7117]  # two placeholder slots for two vectors
    with_embedding = enc.encode("a shapesy circle").hidden
    plain = PromptEncoder(tiny_model).encode("a shapesy circle").hidden
    assert not torch.equal(with_embedding, plain)
    assert "shapesy" in lib.used


def test_embedding_for_another_model_stays_text(tiny_model, tmp_path):
    write(tmp_path / "wide.pt", {"string_to_param": {"*": torch.ones(1, 768)}})
    enc = PromptEncoder(tiny_model, embeddings=EmbeddingLibrary.scan(tmp_path))
    (chunk,) = enc.chunks(tiny_model.pipeline.tokenizer, tiny_model.pipeline.text_encoder, "a wide circle")
    assert 0 not in chunk.ids


def test_generation_records_ti_hashes(tiny_model, gouache_home):
    folder = gouache_home / "embeddings"
    folder.mkdir(exist_ok=True)
    write(folder / "shapestyle.safetensors", {"emb_params": V})
    out = txt2img(tiny_model, GenerationRequest("a shapestyle red circle", steps=2, seed=1))[0]
    assert "TI hashes: \"shapestyle: " in out.infotext
    (folder / "shapestyle.safetensors").unlink()
