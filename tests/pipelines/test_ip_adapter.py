"""Image prompts through the one loop in every mode: more conditioning, scale 0 bit for bit."""

import numpy as np
import pytest
from PIL import Image

from gouache.adapters.ip_spec import IPAdapterSpec
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest, InpaintRequest, UpscaleRequest

RED = Image.new("RGB", (64, 64), (220, 30, 30))
PROMPT = "a red circle on a blue background"


def pixels(result):
    return np.asarray(result.image).astype(int)


def _txt2img(model, **kw):
    from gouache.pipelines.txt2img import txt2img

    return txt2img(model, GenerationRequest(PROMPT, seed=3, steps=4, **kw))[0]


def test_scale_0_and_no_adapter_give_the_same_image_bit_for_bit(tiny_model, tiny_ip_adapter):
    plain = _txt2img(tiny_model)
    off = _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED], 0.0)])
    on = _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED], 1.0)])
    again = _txt2img(tiny_model)
    assert np.array_equal(pixels(plain), pixels(off)) and np.array_equal(pixels(plain), pixels(again))
    assert np.abs(pixels(on) - pixels(plain)).mean() > 1
    assert 'IP-Adapter 0: "Model: tiny-ip [' in off.infotext and "Weight: 0\"" in off.infotext


def test_style_several_adapters_and_images_each_change_the_image(tiny_model, tiny_ip_adapter):
    blue = Image.new("RGB", (64, 64), (35, 70, 220))
    full = pixels(_txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED])]))
    style = pixels(_txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED], style=True)]))
    two = pixels(_txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED, blue])]))
    both = _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED], 0.5), IPAdapterSpec("tiny-ip", [blue])])
    assert len({full.tobytes(), style.tobytes(), two.tobytes(), pixels(both).tobytes()}) == 4
    assert "Style: True" not in both.infotext and "IP-Adapter 1:" in both.infotext


@pytest.mark.parametrize("mode", ["img2img", "inpaint", "upscale", "hires", "deepcache"])
def test_every_mode_takes_image_prompts(tiny_model, tiny_ip_adapter, mode):
    from gouache.pipelines.img2img import img2img
    from gouache.pipelines.inpaint import inpaint
    from gouache.pipelines.upscale import upscale

    spec = [IPAdapterSpec("tiny-ip", [RED])]
    init = Image.new("RGB", (64, 64), (35, 70, 220))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    runs = {
        "img2img": lambda ip: img2img(tiny_model, Img2ImgRequest(PROMPT, init_image=init, seed=1, steps=4,
                                                                 ip_adapters=ip))[0],
        "inpaint": lambda ip: inpaint(tiny_model, InpaintRequest(PROMPT, init_image=init, mask=mask, seed=1, steps=4,
                                                                 ip_adapters=ip))[0],
        "upscale": lambda ip: upscale(tiny_model, UpscaleRequest(PROMPT, init_image=init, seed=1, steps=4, scale=1.5,
                                                                 ip_adapters=ip))[0],
        "hires": lambda ip: _txt2img(tiny_model, enable_hr=True, hr_scale=1.5, ip_adapters=ip),
        "deepcache": lambda ip: _txt2img(tiny_model, deepcache_interval=2, ip_adapters=ip),
    }
    without, with_ip = runs[mode]([]), runs[mode](spec)
    assert "IP-Adapter 0:" in with_ip.infotext
    assert not np.array_equal(pixels(without), pixels(with_ip))


def test_the_adapter_is_kept_for_the_next_generation_and_released_by_one_without(tiny_model, tiny_ip_adapter):
    _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED])])
    kept = dict(tiny_model.__dict__["_ip_adapters"])
    _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [RED], 0.7)])
    assert list(tiny_model.__dict__["_ip_adapters"].values())[0] is list(kept.values())[0]
    _txt2img(tiny_model)
    assert "_ip_adapters" not in tiny_model.__dict__


def test_the_infotext_reads_back_with_its_image_files(tiny_model, tiny_ip_adapter, tmp_path):
    from gouache.pipelines.request import request_from_infotext

    path = tmp_path / "prompt.png"
    RED.save(path)
    made = _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("tiny-ip", [str(path)], 0.6, style=True)])
    back = request_from_infotext(made.infotext)
    (spec,) = back.ip_adapters
    assert (spec.model, spec.images, spec.scale, spec.style) == ("tiny-ip", [str(path.resolve())], 0.6, True)
    assert request_from_infotext(made.infotext, paths=False).ip_adapters == []  # the server opens no path
    assert np.array_equal(pixels(_txt2img(tiny_model, ip_adapters=back.ip_adapters)), pixels(made))


def test_an_adapter_for_another_model_fails_before_sampling(tiny_model, tiny_sdxl, ip_layouts, gouache_home):
    from gouache.errors import InvalidArgument

    ip_layouts.write(gouache_home / "ip-adapter" / "other-xl.safetensors",
                     ip_layouts.h94_state(tiny_sdxl.unet, "basic", 64), encoder="gouache-tiny-clip")
    with pytest.raises(InvalidArgument, match="is for another kind of model than gouache-tiny"):
        _txt2img(tiny_model, ip_adapters=[IPAdapterSpec("other-xl", [RED])])
    assert tiny_model.unet.encoder_hid_proj is None
