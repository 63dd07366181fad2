"""Prompt text → conditioning: emphasis on the encoder's output, chunks, clip skip, SDXL, caching."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.prompts.conditioning import pad_conditionings
from gouache.prompts.encode import PromptEncoder


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return PromptEncoder(tiny_model)


def test_plain_prompt_is_one_chunk_of_last_hidden_state(encoder, tiny_model):
    c = encoder.encode("a red circle on a blue background")
    tok, te = tiny_model.pipeline.tokenizer, tiny_model.pipeline.text_encoder
    ids = tok(["a red circle on a blue background"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = te(ids).last_hidden_state
    assert c.hidden.shape == (1, 77, te.config.hidden_size)
    assert torch.equal(c.hidden, expected)


def test_identical_texts_are_encoded_once(encoder):
    assert encoder.encode("a cat") is encoder.encode("a cat")


def test_emphasis_scales_the_output_and_restores_the_mean(tiny_model):
    plain = PromptEncoder(tiny_model).encode("red circle").hidden
    weighted = PromptEncoder(tiny_model).encode("(red:1.4) circle").hidden
    assert not torch.equal(plain, weighted)
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), abs=1e-7)
    # token 1 ("red") is scaled by 1.4 relative to the others, before the mean is restored
    ratio = (weighted[0, 1] / plain[0, 1]) / (weighted[0, 2] / plain[0, 2])
    assert ratio.median().item() == pytest.approx(1.4, rel=1e-3)
    no_norm = PromptEncoder(tiny_model, emphasis="No norm").encode("(red:1.4) circle").hidden
    assert torch.allclose(no_norm[0, 1], plain[0, 1] * 1.4, atol=1e-5)
    ignored = PromptEncoder(tiny_model, emphasis="Ignore").encode("(red:1.4) circle").hidden
    assert torch.equal(ignored, plain)


def test_long_prompt_and_break_make_more_chunks(encoder):
    long = ", ".join(["a red circle on a blue background"] * 25)  # about 200 tokens
    assert encoder.encode(long).hidden.shape[1] == 77 * 3
    assert encoder.encode("a red circle BREAK on a blue background").hidden.shape[1] == 77 * 2


def test_padding_to_the_same_number_of_chunks(encoder):
    short, long = encoder.encode("a"), encoder.encode("a BREAK b BREAK c")
    a, b = pad_conditionings([short, long], encoder.empty_chunk())
    assert a.hidden.shape == b.hidden.shape == long.hidden.shape
    assert torch.equal(a.hidden[:, 77:154], encoder.empty_chunk().hidden)


def test_clip_skip_takes_the_penultimate_layer_through_the_final_norm(tiny_model):
    te = tiny_model.pipeline.text_encoder
    c = PromptEncoder(tiny_model, clip_skip=2).encode("a cat").hidden
    ids = tiny_model.pipeline.tokenizer(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = te.final_layer_norm(te(ids, output_hidden_states=True).hidden_states[-2])
    assert torch.allclose(c, expected, atol=1e-6)


@pytest.mark.parametrize("kw,message", [({"clip_skip": 0}, "clip_skip"), ({"emphasis": "Loud"}, "emphasis")])
def test_bad_settings(tiny_model, kw, message):
    with pytest.raises(InvalidArgument, match=message):
        PromptEncoder(tiny_model, **kw)


def test_sdxl_uses_both_encoders_and_the_pooled_projection(tiny_sdxl):
    enc = PromptEncoder(tiny_sdxl)
    c = enc.encode("a red circle")
    assert c.hidden.shape == (1, 77, 32 + 64)
    assert c.pooled.shape == (1, 32)
    p = tiny_sdxl.pipeline
    ids2 = p.tokenizer_2(["a red circle"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out2 = p.text_encoder_2(ids2, output_hidden_states=True)
    assert torch.allclose(c.pooled, out2.text_embeds, atol=1e-6)
    assert torch.allclose(c.hidden[..., 32:], out2.hidden_states[-2], atol=1e-6)
    assert enc.encode(", ".join(["a red circle"] * 30)).hidden.shape[1] == 77 * 2  # 119 tokens
