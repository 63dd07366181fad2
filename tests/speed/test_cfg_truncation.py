"""CFG truncation: the unconditional pass stops after the chosen fraction of the steps."""

import pytest

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest, request_from_infotext
from gouache.pipelines.txt2img import txt2img

PROMPT = "a red circle on a blue background"


def _batches(model, req):
    sizes = []
    hook = model.unet.register_forward_pre_hook(lambda m, args, kw: sizes.append(args[0].shape[0]), with_kwargs=True)
    try:
        out = txt2img(model, req)[0]
    finally:
        hook.remove()
    return out, sizes


def test_the_uncond_pass_stops_at_the_fraction(tiny_model):
    out, sizes = _batches(tiny_model, GenerationRequest(PROMPT, steps=10, seed=1, cfg_truncation=0.6))
    assert sizes == [2] * 6 + [1] * 4
    assert "CFG truncation: 0.6" in out.infotext
    assert request_from_infotext(out.infotext).cfg_truncation == 0.6


def test_the_model_default_and_the_ends_of_the_range(tiny_model):
    """gouache-tiny guides the first half of the steps unless told otherwise; 1 guides every step,
    and the infotext says so (reading it back must not fall to the model's default)."""
    default = txt2img(tiny_model, GenerationRequest(PROMPT, steps=10, seed=1))[0]
    assert "CFG truncation: 0.5" in default.infotext
    assert default.image.tobytes() == txt2img(tiny_model, GenerationRequest(PROMPT, steps=10, seed=1, cfg_truncation=0.5))[0].image.tobytes()
    never = txt2img(tiny_model, GenerationRequest(PROMPT, steps=6, seed=1, cfg_truncation=1.0))[0]
    assert "CFG truncation: 1," in never.infotext
    assert request_from_infotext(never.infotext).cfg_truncation == 1
    _, sizes = _batches(tiny_model, GenerationRequest(PROMPT, steps=6, seed=1, cfg_truncation=1.0))
    assert sizes == [2] * 6
    # from the start: the prompt's prediction alone, as guidance off (CFG 1)
    always = txt2img(tiny_model, GenerationRequest(PROMPT, steps=6, seed=1, cfg_truncation=0.0))[0]
    off = txt2img(tiny_model, GenerationRequest(PROMPT, steps=6, seed=1, cfg_scale=1.0))[0]
    assert always.image.tobytes() == off.image.tobytes()


@pytest.mark.parametrize("field,value", [("cfg_truncation", 1.5), ("cfg_truncation", -0.1), ("tome_ratio", 0.9),
                                          ("deepcache_interval", 0), ("deepcache_interval", 2.5)])
def test_bad_values_are_one_clear_error(field, value):
    with pytest.raises(InvalidArgument, match=field):
        GenerationRequest(PROMPT, **{field: value}).validate()
