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


def uncond_and_cond(model, folder, prompt, negative):
    """The conditioning the sampler gets for a prompt and a negative prompt, with ``folder``'s embeddings."""
    from gouache.pipelines.engine import prompt_conditioning

    req = GenerationRequest(prompt, negative_prompt=negative, steps=2, seed=1, width=64, height=64)
    enc = PromptEncoder(model, embeddings=EmbeddingLibrary.scan(folder))
    conds, uncond = prompt_conditioning(model, req, enc)(0)
    return conds[0][0].hidden, uncond.hidden


# every format holding the vectors V: the prompt word gives the same conditioning as the reference file
SAME_VECTORS = [
    ("a1111.pt", {"string_to_token": {"*": 265}, "string_to_param": {"*": V}, "name": "a1111", "step": 10,
                  "sd_checkpoint": None, "sd_checkpoint_name": None}),
    ("learned.bin", {"<learned>": V}),
    ("learned1d.bin", {"<x>": V[0]}),  # old diffusers scripts: one 1-D vector
    ("learned.safetensors", {"<learned>": V}),
]


@pytest.mark.parametrize("filename,data", SAME_VECTORS, ids=[f for f, _ in SAME_VECTORS])
def test_every_format_in_prompt_and_negative(tiny_model, tmp_path, filename, data):
    word = filename.split(".")[0]
    vectors = V[:1] if word == "learned1d" else V
    for sub in ("file", "ref"):
        (tmp_path / sub).mkdir()
    write(tmp_path / "file" / filename, data)
    write(tmp_path / "ref" / f"{word}.safetensors", {"emb_params": vectors})
    prompt, negative = f"a {word} circle", f"blurry {word}"
    got = uncond_and_cond(tiny_model, tmp_path / "file", prompt, negative)
    ref = uncond_and_cond(tiny_model, tmp_path / "ref", prompt, negative)
    plain = uncond_and_cond(tiny_model, tmp_path / "empty", prompt, negative)
    for g, r, p in zip(got, ref, plain):  # prompt, then negative prompt
        torch.testing.assert_close(g, r, atol=0, rtol=0)
        assert not torch.allclose(g, p)


def test_sdxl_file_gives_each_encoder_its_half(tiny_sdxl, tmp_path):
    l, g = torch.randn(2, 32), torch.randn(2, 64)  # tiny_sdxl's encoders are 32 and 64 wide
    (tmp_path / "sdxl").mkdir()
    write(tmp_path / "sdxl" / "both.safetensors", {"clip_l": l, "clip_g": g})
    for sub, v in (("l", l), ("g", g)):
        (tmp_path / sub).mkdir()
        write(tmp_path / sub / "both.safetensors", {"emb_params": v})
    got = uncond_and_cond(tiny_sdxl, tmp_path / "sdxl", "a both circle", "both")
    only_l = uncond_and_cond(tiny_sdxl, tmp_path / "l", "a both circle", "both")
    only_g = uncond_and_cond(tiny_sdxl, tmp_path / "g", "a both circle", "both")
    plain = uncond_and_cond(tiny_sdxl, tmp_path / "empty", "a both circle", "both")
    for x, a, b, p in zip(got, only_l, only_g, plain):
        torch.testing.assert_close(x[..., :32], a[..., :32], atol=0, rtol=0)
        torch.testing.assert_close(x[..., 32:], b[..., 32:], atol=0, rtol=0)
        assert not torch.allclose(x[..., :32], p[..., :32]) and not torch.allclose(x[..., 32:], p[..., 32:])


@pytest.mark.parametrize(
    "filename,data,names",
    [
        ("sks.safetensors", {"<sks>": V}, ["<sks>", "sks"]),
        ("cat-toy.bin", {"<cat-toy>": V[0]}, ["<cat-toy>", "cat-toy"]),
        ("file.pt", {"string_to_param": {"*": V}, "name": "shapey"}, ["file", "shapey"]),
        ("generic.safetensors", {"emb_params": V}, ["generic"]),  # a generic key names no token
        ("sdxl.safetensors", {"clip_l": V.clone(), "clip_g": V.clone()}, ["sdxl"]),
    ],
)
def test_stored_token_is_a_second_name(tmp_path, filename, data, names):
    write(tmp_path / filename, data)
    assert EmbeddingLibrary.scan(tmp_path).names() == names


def test_stem_wins_over_a_token(tmp_path):
    write(tmp_path / "a.safetensors", {"b": V})  # file a claims the word b ...
    write(tmp_path / "b.safetensors", {"emb_params": V[:1]})  # ... which is file b's stem
    lib = EmbeddingLibrary.scan(tmp_path)
    assert lib.paths["b"] == tmp_path / "b.safetensors" and lib.paths["a"] == tmp_path / "a.safetensors"


def test_token_in_a_prompt(tiny_model, tmp_path):
    write(tmp_path / "sks.safetensors", {"<sks>": V})
    lib = EmbeddingLibrary.scan(tmp_path)
    enc = PromptEncoder(tiny_model, embeddings=lib)
    (chunk,) = enc.chunks(tiny_model.pipeline.tokenizer, tiny_model.pipeline.text_encoder, "a <sks> on a blue background")
    assert chunk.ids[:4] == [49406, 320, 0, 0]  # the token's three BPE pieces became the two vectors
    by_stem = PromptEncoder(tiny_model, embeddings=lib).encode("a sks on a blue background").hidden
    torch.testing.assert_close(enc.encode("a <sks> on a blue background").hidden, by_stem, atol=0, rtol=0)
    assert "<sks>" in lib.used


def test_token_scan_reads_a_file_once(tmp_path, monkeypatch):
    from gouache.adapters import embeddings

    write(tmp_path / "sks.safetensors", {"<sks>": V})
    EmbeddingLibrary.scan(tmp_path)
    calls = []
    monkeypatch.setattr("safetensors.torch.load_file", lambda *a, **k: calls.append(a))
    assert "<sks>" in EmbeddingLibrary.scan(tmp_path).names() and not calls  # cached per (path, mtime, size)
    write(tmp_path / "sks.safetensors", {"<sks2>": V[:1]})  # rewritten: read again
    embeddings.inspect_file.cache_clear()
    monkeypatch.undo()
    assert "<sks2>" in EmbeddingLibrary.scan(tmp_path).names()


# files a user may find in their embeddings folder that are no embedding: (filename, how to write it, reason)
JUNK = [
    ("random.pt", lambda p: p.write_bytes(bytes(range(7, 256)) * 3), "cannot read the embedding"),
    ("list.pt", lambda p: torch.save([1, 2, 3], p), "holds a list, not an embedding"),
    ("wrong.pt", lambda p: torch.save({"foo": 1, "bar": 2}, p), "not a textual-inversion embedding"),
    ("a1111str.pt", lambda p: torch.save({"string_to_param": "x", "name": "n"}, p), "exactly one vector set"),
    ("junk.safetensors", lambda p: p.write_bytes(b"\x00" * 50), "cannot read the embedding"),
    ("checkpoint.safetensors", lambda p: p.write_bytes(b"\x00" * (16 << 20 | 1)), "too large"),
]


@pytest.mark.parametrize("filename,make,reason", JUNK, ids=[f for f, _, _ in JUNK])
def test_a_bad_file_is_reported_once_and_fails_only_when_used(tiny_model, tmp_path, caplog, filename, make, reason):
    make(tmp_path / filename)
    write(tmp_path / "good.safetensors", {"emb_params": V})
    with caplog.at_level("WARNING", logger="gouache.adapters.embeddings"):
        lib = EmbeddingLibrary.scan(tmp_path)
        EmbeddingLibrary.scan(tmp_path)  # every generation scans: the warning is once per process (per file version)
    (record,) = caplog.records
    assert str(tmp_path / filename) in record.getMessage() and reason in record.getMessage()
    assert "\n" not in record.getMessage()
    enc = PromptEncoder(tiny_model, embeddings=lib)
    enc.encode("a good red circle on a blue background")  # prompts not naming it work
    assert "good" in lib.used
    stem = filename.split(".")[0]
    with pytest.raises(ModelLoadError, match=f"embedding '{stem}' cannot be used: .*{filename}: .*{reason}"):
        enc.encode(f"a {stem} circle")


def test_cli_bad_embedding(run, gouache_home, tmp_path, caplog):
    folder = gouache_home / "embeddings"
    folder.mkdir(exist_ok=True)
    torch.save([1, 2, 3], folder / "junkfile.pt")
    try:
        with caplog.at_level("WARNING", logger="gouache.adapters.embeddings"):
            code, out, err = run("generate", "a red circle on a blue background", "--steps", 2, "--out", tmp_path)
            assert code == 0 and err == "" and len(list(tmp_path.glob("*.png"))) == 1
            code, out, err = run("generate", "a junkfile circle", "--steps", 2, "--out", tmp_path)
        # pytest's log capture stands in for the terminal: there the warning is logging's one stderr line
        assert [r.getMessage() for r in caplog.records] == [
            f"gouache: warning: cannot use embedding {folder / 'junkfile.pt'}: holds a list, not an embedding"]
        assert code == 1 and err == (f"gouache: error: embedding 'junkfile' cannot be used: {folder / 'junkfile.pt'}: "
                                     "holds a list, not an embedding\n")
    finally:
        (folder / "junkfile.pt").unlink()


def test_shipped_example_answers_only_to_its_token(run, tmp_path):
    from PIL import Image

    assert {"<sks>", "sks"} & set(EmbeddingLibrary.scan().names()) == {"<sks>"}  # what the API and UI list
    infotexts = {}
    for prompt in ("a photo of sks cat", "a <sks> on a blue background"):
        code, out, err = run("generate", prompt, "--steps", 2, "--out", tmp_path / prompt)
        assert code == 0, err
        (png,) = (tmp_path / prompt).glob("*.png")
        infotexts[prompt] = Image.open(png).text["parameters"]
    assert "TI hashes" not in infotexts["a photo of sks cat"]  # the DreamBooth trigger word stays plain text
    assert 'TI hashes: "<sks>: ' in infotexts["a <sks> on a blue background"]

