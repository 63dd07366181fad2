"""Text-to-image with gouache-tiny: seeds, prompt syntax, metadata, SDXL conditioning."""

import numpy as np
import pytest
import torch

from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.engine import prompt_conditioning as conditioning_schedule
from gouache.pipelines.txt2img import txt2img


def gen(model, prompt, **kw):
    kw = {"steps": 6, "seed": 5, **kw}
    return txt2img(model, GenerationRequest(prompt, **kw))


def arr(result):
    return np.asarray(result.image)


def test_same_seed_same_image_and_batch_seeds_follow(tiny_model):
    batch = gen(tiny_model, "a red circle on a blue background", batch_size=2, seed=10)
    assert [r.seed for r in batch] == [10, 11]
    again = gen(tiny_model, "a red circle on a blue background", seed=11)[0]
    assert np.array_equal(arr(batch[1]), arr(again))
    assert not np.array_equal(arr(batch[0]), arr(batch[1]))


def test_n_iter_continues_the_seeds(tiny_model):
    out = gen(tiny_model, "a red circle on a blue background", batch_size=2, n_iter=2, seed=3, steps=2)
    assert [r.seed for r in out] == [3, 4, 5, 6]


def test_random_seed_is_recorded(tiny_model):
    r = gen(tiny_model, "a red circle on a blue background", seed=-1, steps=2)[0]
    assert r.seed >= 0 and f"Seed: {r.seed}," in r.infotext


@pytest.mark.parametrize(
    "prompt",
    [
        "[a red circle:a blue square:0.5] on a yellow background",
        "(red:1.4) circle",
        "a red circle AND a blue square :0.5",
        "a [red|blue] circle, [[on]] a \\(white\\) background BREAK square",
        ", ".join(["a red circle on a blue background"] * 25),  # about 200 tokens
        "",
    ],
)
def test_a1111_syntax_generates_and_is_written_verbatim(tiny_model, prompt):
    r = gen(tiny_model, prompt, steps=4)[0]
    assert r.image.size == (64, 64)
    assert r.infotext.startswith(prompt + "\n") if prompt else r.infotext.startswith("Steps: 4,")


def test_schedule_switches_the_text_at_the_right_step(tiny_model, monkeypatch):
    req = GenerationRequest("[a red circle:a blue square:0.5] on a white background", steps=10, seed=1,
                            width=64, height=64)
    at = conditioning_schedule(tiny_model, req)
    from gouache.prompts.encode import PromptEncoder

    texts = [PromptEncoder(tiny_model).encode(t).hidden for t in
             ("a red circle on a white background", "a blue square on a white background")]
    for step, expected in [(0, 0), (4, 0), (5, 0), (6, 1), (9, 1)]:
        (cond, weight), = at(step)[0]
        assert torch.equal(cond.hidden, texts[expected]), step


def test_and_parts_are_weighted_in_the_guidance(tiny_model):
    req = GenerationRequest("a red circle AND a blue square:0.5", steps=4, width=64, height=64)
    conds, uncond = conditioning_schedule(tiny_model, req)(0)
    assert [w for _, w in conds] == [1.0, 0.5]
    from gouache.sampling.guidance import CFGDenoiser, unet_call

    class Probe(torch.nn.Module):  # eps = mean of the conditioning, so the combination is visible
        def forward(self, x, t, encoder_hidden_states, added_cond_kwargs=None, return_dict=False):
            return (x * 0 + encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None],)

    eps = CFGDenoiser(unet_call(Probe()), lambda step: (conds, uncond), 7.0)(torch.zeros(1, 4, 8, 8), torch.tensor(1), 0)
    m = lambda c: c.hidden.mean().item()  # noqa: E731
    expected = m(uncond) + 7.0 * (1.0 * (m(conds[0][0]) - m(uncond)) + 0.5 * (m(conds[1][0]) - m(uncond)))
    assert eps.flatten()[0].item() == pytest.approx(expected, rel=1e-5)


def test_clip_skip_and_old_timelines_are_recorded(tiny_model):
    r = gen(tiny_model, "[a red circle:a blue circle:5] on a white background", clip_skip=2,
            old_prompt_editing=True, emphasis="No norm", steps=2)[0]
    assert "Clip skip: 2" in r.infotext and "Old prompt editing timelines: True" in r.infotext
    assert "Emphasis: No norm" in r.infotext
    from gouache.pipelines.request import request_from_infotext

    back = request_from_infotext(r.infotext)
    assert (back.clip_skip, back.old_prompt_editing, back.emphasis) == (2, True, "No norm")


def test_sdxl_generates_with_pooled_and_size_conditioning(tiny_sdxl):
    out = txt2img(tiny_sdxl, GenerationRequest("a red circle BREAK blue", steps=2, seed=1, negative_prompt="x"))
    assert out[0].image.size == (64, 64)


def test_default_cfg_is_the_models(tiny_model):
    r = gen(tiny_model, "a red circle on a blue background", steps=2)[0]
    assert r.request.cfg_scale == 5.0 and "CFG scale: 5.0," in r.infotext


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE", "Heun", "UniPC"])
def test_every_image_of_a_batch_can_be_made_alone(tiny_model, sampler):
    batch = gen(tiny_model, "a red circle on a blue background", batch_size=3, seed=20, sampler=sampler, steps=4)
    alone = gen(tiny_model, "a red circle on a blue background", seed=22, sampler=sampler, steps=4)[0]
    assert np.array_equal(arr(batch[2]), arr(alone))
