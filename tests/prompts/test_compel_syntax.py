"""compel's prompt syntax (gouache.prompts.compel_syntax): what the image and the messages show."""

import sys
import time

import numpy as np
import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest
from gouache.prompts.compel_syntax import MAX_NESTING, CompelEncoder, check_syntax
from gouache.prompts.encode import PromptEncoder
from gouache.tiny.judge import read_image

pytest.importorskip("compel")

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"
BLEND = f'("{RED}", "{YELLOW}").blend({{w:g}}, {{v:g}})'
FAST = dict(seed=1, steps=8)


def shape_green(image) -> float:
    """The mean green of the shape's pixels (those away from the border's colour): red ~30, yellow ~210."""
    a = np.asarray(image.convert("RGB")).astype(float)
    border = np.median(np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3)]), axis=0)
    shape = np.linalg.norm(a - border, axis=-1) > 100
    return float(a[shape][:, 1].mean())


def generate(model, prompt, **kw):
    from gouache import txt2img

    return txt2img(prompt, model=model, **{**FAST, **kw})[0]


def test_a_blend_moves_the_image_from_one_prompt_to_the_other(tiny_model):
    ends = {w: generate(tiny_model, BLEND.format(w=w, v=1 - w), prompt_syntax="compel") for w in (1, 0.5, 0)}
    assert read_image(ends[1].image).colour == read_image(generate(tiny_model, RED).image).colour == "red"
    assert read_image(ends[0].image).colour == read_image(generate(tiny_model, YELLOW).image).colour == "yellow"
    green = {w: shape_green(r.image) for w, r in ends.items()}
    assert green[1] + 20 < green[0.5] < green[0] - 20, green


def test_plain_prompts_read_with_compel_give_a1111s_conditioning(tiny_model):
    a1111 = PromptEncoder(tiny_model).encode(RED).hidden
    assert torch.equal(CompelEncoder(tiny_model).encode(RED).hidden, a1111)
    assert not torch.equal(CompelEncoder(tiny_model).encode("a red++ circle on a blue background").hidden, a1111)


def test_clip_skip_2_is_the_penultimate_layer_through_the_final_norm(tiny_model):
    assert torch.allclose(CompelEncoder(tiny_model, clip_skip=2).encode(RED).hidden,
                          PromptEncoder(tiny_model, clip_skip=2).encode(RED).hidden, atol=1e-6)
    with pytest.raises(InvalidArgument, match="clip_skip"):
        CompelEncoder(tiny_model, clip_skip=3)


def test_the_default_syntax_does_not_touch_compel_and_is_unchanged_bit_for_bit(tiny_model, monkeypatch):
    """The default (and an explicit "a1111") is the pre-compel path: A1111's conditioning through
    the loop, with compel made unimportable."""
    from gouache.pipelines.engine import generation, resolve_request
    from gouache.prompts.conditioning import conditioning_schedule

    monkeypatch.setitem(sys.modules, "compel", None)
    default = generate(tiny_model, RED, negative_prompt="a square")
    explicit = generate(tiny_model, RED, negative_prompt="a square", prompt_syntax="a1111")
    req = resolve_request(GenerationRequest(RED, "a square", **FAST), tiny_model)
    # A1111's conditioning, made by hand, through the engine's loop and speed scope (the same
    # arithmetic as generate's: outside that scope the last bit of a pixel can differ)
    a1111 = lambda encoder: conditioning_schedule(PromptEncoder(tiny_model), RED, "a square", req.steps)  # noqa: E731
    with generation(tiny_model, req, conditioning=a1111) as gen:
        before = gen.images([req.seed])[0]
    assert np.array_equal(np.asarray(default.image), np.asarray(before))
    assert np.array_equal(np.asarray(explicit.image), np.asarray(before))
    assert "Prompt syntax" not in default.infotext and "Prompt syntax" not in explicit.infotext


def test_the_infotext_records_the_syntax_and_reads_it_back(tiny_model):
    from gouache.pipelines.request import request_from_infotext

    made = generate(tiny_model, BLEND.format(w=0.5, v=0.5), prompt_syntax="compel")
    assert "Prompt syntax: compel" in made.infotext
    again = request_from_infotext(made.infotext)
    assert again.prompt_syntax == "compel" and again.prompt == BLEND.format(w=0.5, v=0.5)
    remade = generate(tiny_model, again.prompt, prompt_syntax=again.prompt_syntax)
    assert np.array_equal(np.asarray(made.image), np.asarray(remade.image))


def test_lora_tags_still_switch_loras_on(tiny_model):
    plain = generate(tiny_model, RED, prompt_syntax="compel")
    tagged = generate(tiny_model, f"{RED} <lora:gouache-outline:1>", prompt_syntax="compel")
    assert tagged.params["Lora hashes"].startswith("gouache-outline: ")
    assert not np.array_equal(np.asarray(plain.image), np.asarray(tagged.image))
    # the tag is out of the text compel reads
    enc = CompelEncoder(tiny_model)
    assert torch.equal(enc.encode(f"{RED} <lora:gouache-outline:1>").hidden, enc.encode(RED).hidden)


def test_sdxl_gets_both_encoders_and_the_pooled_output(tiny_sdxl):
    enc = CompelEncoder(tiny_sdxl)
    c = enc.encode(BLEND.format(w=0.7, v=0.3))
    assert c.hidden.shape == (1, 77, 32 + 64) and c.pooled.shape == (1, 32)
    plain = enc.encode(RED)
    a1111 = PromptEncoder(tiny_sdxl).encode(RED)
    assert torch.allclose(plain.hidden, a1111.hidden, atol=1e-6) and torch.allclose(plain.pooled, a1111.pooled, atol=1e-6)
    long = enc.encode(", ".join(["a red circle"] * 30))  # 119 tokens: two chunks, not cut
    assert long.hidden.shape == (1, 77 * 2, 96)
    with pytest.raises(InvalidArgument, match="SDXL takes only 1"):
        CompelEncoder(tiny_sdxl, clip_skip=2)


def test_sdxl_generates_with_compel(tiny_sdxl):
    from gouache.pipelines.txt2img import txt2img

    req = GenerationRequest(BLEND.format(w=0.7, v=0.3), "a square--", steps=2, seed=1, width=64, height=64,
                            prompt_syntax="compel")
    out = txt2img(tiny_sdxl, req)
    assert out[0].image.size == (64, 64) and "Prompt syntax: compel" in out[0].infotext


@pytest.mark.parametrize("prompt,message", [
    ('("a cat", "a dog").blend(1)', "one weight per prompt"),
    ('("a cat", "a dog").blend(x)', "weights are numbers"),
    ('("a", "b").blend(0.5, 0.5) ("c", "d").blend(0.5, 0.5)', "not valid compel syntax: Expected end of text"),
    ("a cat.swap(dog)", r"\.swap\(\)"),
    ("withLora(fur, 0.5) a cat", "<lora:name:0.8>"),
    ("(" * (MAX_NESTING + 1) + "a", "nests parentheses 11 deep"),
    (" ".join(f"w{i}-- and" for i in range(64)), "65 text-encoder passes"),
])
def test_bad_syntax_is_one_clear_message(prompt, message):
    with pytest.raises(InvalidArgument, match=message):
        GenerationRequest(prompt, prompt_syntax="compel").validate()


def test_the_negative_prompt_is_checked_too():
    with pytest.raises(InvalidArgument, match="`negative_prompt` is not valid compel syntax"):
        GenerationRequest("a cat", '("a", "b").blend(z)', prompt_syntax="compel").validate()


@pytest.mark.parametrize("kw,message", [({"prompt_syntax": "invokeai"}, "one of a1111, compel"),
                                        ({"prompt_syntax": "compel", "emphasis": "No norm"}, "emphasis"),
                                        ({"prompt_syntax": "compel", "old_prompt_editing": True}, "old_prompt_editing")])
def test_settings_that_do_not_go_with_compel(kw, message):
    with pytest.raises(InvalidArgument, match=message):
        GenerationRequest("a cat", **kw).validate()


def test_without_compel_the_option_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "compel" else real(name, *a))
    with pytest.raises(InvalidArgument, match=r"pip install 'gouache\[compel\]'"):
        GenerationRequest("a cat++", prompt_syntax="compel").validate()


def test_deep_parentheses_parse_quickly():
    """compel's parser alone takes seconds at 5 levels; gouache parses with pyparsing's packrat memo."""
    start = time.perf_counter()
    for prompt in ("(" * MAX_NESTING + "a", "(" * MAX_NESTING + "a" + ")" * MAX_NESTING, '("a", ' * MAX_NESTING):
        try:
            check_syntax(prompt)
        except InvalidArgument:
            pass
    assert time.perf_counter() - start < 2


def test_an_embedding_name_is_refused_not_read_as_words(tiny_model, tmp_path):
    from safetensors.torch import save_file

    from gouache.adapters.embeddings import EmbeddingLibrary

    save_file({"emb_params": torch.randn(2, 64)}, str(tmp_path / "shapesy.safetensors"))
    enc = CompelEncoder(tiny_model, embeddings=EmbeddingLibrary.scan(tmp_path))
    with pytest.raises(InvalidArgument, match="'shapesy'.*prompt_syntax 'a1111'"):
        enc.encode("a shapesy circle")
    assert enc.encode(RED).hidden.shape == (1, 77, 64)
