"""Every sampler `gouache samplers` lists draws right images on gouache-tiny at the model's defaults
(20 steps, its CFG, its guidance interval), judged by gouache.tiny.judge. LCM is for LCM models
(tested with the shipped LCM-LoRA in tests/train/test_lcm.py)."""

import pytest

from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.sampling.samplers import describe
from gouache.tiny.judge import evaluation_prompts, parse_prompt, read_image

SAMPLERS = [name for name, _, _ in describe() if name != "LCM"]
PROMPTS = evaluation_prompts(held_out=False, n=4)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_listed_sampler_is_right_at_the_defaults(tiny_model, sampler):
    wrong = []
    for i, prompt in enumerate(PROMPTS):
        image = txt2img(tiny_model, GenerationRequest(prompt, sampler=sampler, seed=1000 + i))[0].image
        reading = read_image(image).as_tuple()
        if reading != parse_prompt(prompt):
            wrong.append((prompt, reading))
    assert not wrong, f"{sampler}: {wrong}"


def test_the_list_is_complete():
    assert {"Euler", "Euler a", "DPM++ 2M", "PNDM", "PLMS", "LMS", "UniPC", "DPM++ 2M SDE", "DPM2 a"} <= set(SAMPLERS)
