"""ControlNet in the one loop: scale 0, two nets, start/end fractions, every mode, SDXL."""

import numpy as np
import pytest
import torch
from PIL import Image

from gouache.control.guidance import ActiveControl, ControlResiduals, control_tensor
from gouache.control.spec import ControlSpec
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest, InpaintRequest, UpscaleRequest
from gouache.pipelines.txt2img import txt2img

PROMPT = "a red circle on a blue background"


def gen(model, controls, **kw):
    kw = {"steps": 6, "seed": 3, **kw}
    return txt2img(model, GenerationRequest(PROMPT, controls=controls, **kw))


def arr(result):
    return np.asarray(result.image).astype(int)


def test_scale_zero_is_no_controlnet_and_scale_one_changes_the_image(tiny_model, tiny_controlnet, square):
    plain = arr(gen(tiny_model, [])[0])
    assert np.array_equal(arr(gen(tiny_model, [ControlSpec("canny", square, tiny_controlnet, weight=0)])[0]), plain)
    assert np.abs(arr(gen(tiny_model, [ControlSpec("canny", square, tiny_controlnet)])[0]) - plain).mean() > 2


def test_two_controlnets_add_their_residuals(tiny_model, tiny_controlnet, other_controlnet, square):
    x, t = torch.randn(2, 4, 8, 8), torch.tensor(500)
    from gouache.prompts.conditioning import Conditioning

    c = Conditioning(torch.randn(2, 77, tiny_model.unet.config.cross_attention_dim))
    hint = control_tensor(square)
    a = ActiveControl(tiny_controlnet.net, hint, 0.7)
    b = ActiveControl(other_controlnet.net, hint, 1.3)
    both, one, two = (ControlResiduals(nets, 10)(x, t, 0, c) for nets in ([a, b], [a], [b]))
    for key in ("mid_block_additional_residual",):
        torch.testing.assert_close(both[key], one[key] + two[key])
    for s, p, q in zip(both["down_block_additional_residuals"], one["down_block_additional_residuals"],
                       two["down_block_additional_residuals"]):
        torch.testing.assert_close(s, p + q)
    # and end to end: the pair gives an image unlike either net alone
    images = [arr(gen(tiny_model, cs)[0]) for cs in ([ControlSpec("canny", square, tiny_controlnet),
                                                      ControlSpec("none", square, other_controlnet)],
                                                     [ControlSpec("canny", square, tiny_controlnet)],
                                                     [ControlSpec("none", square, other_controlnet)])]
    assert np.abs(images[0] - images[1]).mean() > 1 and np.abs(images[0] - images[2]).mean() > 1


@pytest.mark.parametrize("start, end, active", [(0.0, 1.0, list(range(10))), (0.0, 0.5, [0, 1, 2, 3, 4]),
                                                (0.5, 1.0, [5, 6, 7, 8, 9]), (0.2, 0.6, [2, 3, 4, 5])])
def test_start_and_end_fractions_pick_the_steps(start, end, active):
    control = ActiveControl(None, None, 1.0, start, end)
    assert [i for i in range(10) if control.active(i, 10)] == active


def _latents_per_step(model, controls, steps=10):
    from gouache.pipelines import engine

    seen = []
    req = GenerationRequest(PROMPT, steps=steps, seed=4, width=64, height=64, cfg_scale=5.0, controls=controls)
    from gouache.pipelines.controlnet import prepare_controls

    prepared = prepare_controls(model, req)
    at = engine.prompt_conditioning(model, req)
    engine.sample_latents(model, req, at, [4], None, watch=lambda i, n, x: seen.append(x.clone()), controls=prepared)
    return seen


def test_a_net_active_for_the_first_half_guides_only_the_first_half(tiny_model, tiny_controlnet, square):
    calls = []
    hook = tiny_controlnet.net.register_forward_hook(lambda *a: calls.append(1))
    try:
        full = _latents_per_step(tiny_model, [ControlSpec("canny", square, tiny_controlnet)])
        n_full = len(calls)
        half = _latents_per_step(tiny_model, [ControlSpec("canny", square, tiny_controlnet, end=0.5)])
    finally:
        hook.remove()
    none = _latents_per_step(tiny_model, [])
    assert len(calls) - n_full == n_full // 2  # the net ran at half of the model calls
    for i in range(5):  # steps 0-4 as with the net all the way
        assert torch.equal(half[i], full[i]) and not torch.equal(half[i], none[i])
    assert not torch.allclose(half[-1], full[-1])  # then without it: the end differs from the full run


def test_batch_images_are_the_images_made_alone(tiny_model, tiny_controlnet, square):
    batch = gen(tiny_model, [ControlSpec("canny", square, tiny_controlnet)], batch_size=2, seed=7)
    alone = gen(tiny_model, [ControlSpec("canny", square, tiny_controlnet)], seed=8)[0]
    assert np.array_equal(arr(batch[1]), arr(alone))


def test_img2img_and_inpainting_run_with_a_controlnet(tiny_model, tiny_controlnet, square):
    from gouache.pipelines.img2img import img2img
    from gouache.pipelines.inpaint import inpaint

    init = Image.new("RGB", (64, 64), (35, 70, 220))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (8, 8, 56, 56))
    spec = ControlSpec("canny", square, tiny_controlnet)
    plain = img2img(tiny_model, Img2ImgRequest(PROMPT, init_image=init, steps=6, seed=1))[0]
    out = img2img(tiny_model, Img2ImgRequest(PROMPT, init_image=init, steps=6, seed=1, controls=[spec]))[0]
    assert "ControlNet 0: " in out.infotext and np.abs(arr(out) - arr(plain)).mean() > 1
    # no image: the unit reads the init image
    own = img2img(tiny_model, Img2ImgRequest(PROMPT, init_image=square, steps=6, seed=1,
                                             controls=[ControlSpec("canny", None, tiny_controlnet)]))[0]
    assert own.image.size == (64, 64)
    painted = inpaint(tiny_model, InpaintRequest(PROMPT, init_image=init, mask=mask, steps=6, seed=1, controls=[spec]))[0]
    unpainted = inpaint(tiny_model, InpaintRequest(PROMPT, init_image=init, mask=mask, steps=6, seed=1))[0]
    assert "ControlNet 0: " in painted.infotext and np.abs(arr(painted) - arr(unpainted)).mean() > 1
    only = inpaint(tiny_model, InpaintRequest(PROMPT, init_image=init, mask=mask, steps=6, seed=1, controls=[spec],
                                              inpaint_full_res=True, width=64, height=64))[0]
    assert only.image.size == (64, 64)


def test_hires_fix_resizes_the_control_map(tiny_model, tiny_controlnet, square):
    out = gen(tiny_model, [ControlSpec("canny", square, tiny_controlnet)], steps=4, enable_hr=True, hr_scale=1.5,
              width=64, height=64)[0]
    assert out.image.size == (96, 96)


def test_tiled_upscale_with_a_tile_controlnet(tiny_model, tiny_controlnet, square):
    from gouache.pipelines.upscale import upscale

    req = UpscaleRequest(PROMPT, init_image=square, scale=2, steps=4, seed=1, denoising_strength=0.5)
    plain = upscale(tiny_model, req)[0]
    tiled = upscale(tiny_model, UpscaleRequest(**{**req.__dict__, "controls": [ControlSpec("tile", None, tiny_controlnet)]}))[0]
    assert tiled.image.size == plain.image.size == (128, 128)
    assert "Module: tile" in tiled.infotext and not np.array_equal(arr(tiled), arr(plain))


def test_sdxl_controlnet_runs(tiny_sdxl, sdxl_controlnet, square):
    plain = txt2img(tiny_sdxl, GenerationRequest(PROMPT, steps=3, seed=2))[0]
    out = txt2img(tiny_sdxl, GenerationRequest(PROMPT, steps=3, seed=2, controls=[ControlSpec("canny", square, sdxl_controlnet)]))[0]
    assert out.image.size == plain.image.size and "Model: rand-xl [00000003]" in out.infotext
    assert not np.array_equal(arr(out), arr(plain))


def test_a_controlnet_for_another_base_is_refused(tiny_sdxl, tiny_controlnet, square):
    from gouache.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="for another kind of model"):
        txt2img(tiny_sdxl, GenerationRequest(PROMPT, steps=2, controls=[ControlSpec("canny", square, tiny_controlnet)]))
