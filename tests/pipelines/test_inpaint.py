"""Inpainting and outpainting with gouache-tiny and a tiny 9-channel UNet: what is kept, what changes."""

import numpy as np
import pytest
import torch
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.pipelines.inpaint import inpaint, outpaint, outpaint_request
from gouache.pipelines.masking import blur_radius
from gouache.pipelines.request import InpaintRequest
from gouache.pipelines.txt2img import txt2img

PROMPT = "a blue square on a yellow background"


@pytest.fixture(scope="module")
def init():
    """Random pixels: any pixel the paste-back loses would show."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def mask():
    m = Image.new("L", (64, 64))
    m.paste(255, (20, 24, 36, 40))
    return m


def run(model, init, mask, **kw):
    kw = {"steps": 3, "seed": 5, "denoising_strength": 0.75, **kw}
    return inpaint(model, InpaintRequest(PROMPT, init_image=init, mask=mask, **kw))


def grown(mask: Image.Image, radius: int) -> np.ndarray:
    """Where the mask reaches after a blur of that radius: every pixel within `radius` (each axis)."""
    m = np.asarray(mask) > 127
    out = m.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= np.roll(m, (dy, dx), axis=(0, 1))  # the test mask is far from the border
    return out


@pytest.mark.parametrize("kw", [
    {"mask_blur": 0},
    {"mask_blur": 4},
    {"mask_blur": 2, "inpainting_fill": 0},
    {"mask_blur": 2, "inpainting_fill": 2, "denoising_strength": 1.0},
    {"mask_blur": 2, "inpainting_fill": 3, "sampler": "Euler a"},
    {"mask_blur": 4, "inpaint_full_res": True, "inpaint_full_res_padding": 4},
    {"mask_blur": 0, "inpaint_full_res": True, "inpaint_full_res_padding": 0, "width": 64, "height": 64},
])
def test_pixels_outside_the_grown_mask_are_the_input(tiny_model, init, mask, kw):
    out = run(tiny_model, init, mask, **kw)[0]
    a, b = np.asarray(out.image), np.asarray(init)
    outside = ~grown(mask, blur_radius(kw["mask_blur"]))
    assert out.image.size == (64, 64)
    assert np.array_equal(a[outside], b[outside])
    assert not np.array_equal(a[~outside], b[~outside])  # and the masked area was repainted


def test_infotext_records_a1111_inpainting_keys(tiny_model, init, mask):
    whole = run(tiny_model, init, mask, inpainting_fill=2, steps=2)[0].infotext.splitlines()[-1]
    assert ("Denoising strength: 0.75, Mask blur: 4, Inpaint area: Whole picture, Masked content: latent noise, "
            "CFG truncation: 0.5, Dtype: fp32, Attention: gouache, Version:") in whole
    only = run(tiny_model, init, mask, inpaint_full_res=True, inpaint_full_res_padding=8, steps=2)[0]
    assert "Inpaint area: Only masked, Masked area padding: 8, Masked content: original," in only.infotext


def test_same_seed_same_image(tiny_model, init, mask):
    a, b = (run(tiny_model, init, mask, sampler="Euler a", seed=9)[0] for _ in range(2))
    c = run(tiny_model, init, mask, sampler="Euler a", seed=10)[0]
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


@pytest.fixture(scope="module")
def tiny_inpainting(tiny_model):
    """gouache-tiny with a random 9-channel UNet of the same sizes (an SD-inpainting-shaped model)."""
    from diffusers import UNet2DConditionModel

    from gouache.pipelines.model import LoadedModel
    from gouache.models.tiny_architecture import TinyConfig, build_unet

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config({**build_unet(TinyConfig()).config, "in_channels": 9}).eval()
    pipe = type(tiny_model.pipeline)(**{**tiny_model.pipeline.components, "unet": unet})
    return LoadedModel(pipe, "tiny-inpainting", "tiny-inpainting", "1111111111")


def test_nine_channel_unet_sees_the_mask_and_the_image_outside_is_kept(tiny_inpainting, init, mask, monkeypatch):
    seen = []
    forward = tiny_inpainting.unet.forward
    monkeypatch.setattr(tiny_inpainting.unet, "forward", lambda x, *a, **kw: seen.append(x) or forward(x, *a, **kw))
    out = run(tiny_inpainting, init, mask, mask_blur=0, cfg_scale=1.0)[0]
    assert len(seen) == 2 and all(x.shape == (1, 9, 8, 8) for x in seen)  # int(3 · 0.75) steps
    expected = torch.zeros(8, 8)
    expected[3:5, 2:5] = 1  # the 16x16 mask at (20, 24) covers these latent pixels
    assert torch.equal(seen[0][0, 4], expected)
    a, b = np.asarray(out.image), np.asarray(init)
    assert np.array_equal(a[np.asarray(mask) == 0], b[np.asarray(mask) == 0])


def test_nine_channel_unet_also_does_txt2img(tiny_inpainting):
    from gouache.pipelines.request import GenerationRequest

    assert txt2img(tiny_inpainting, GenerationRequest(PROMPT, steps=2, seed=1))[0].image.size == (64, 64)


@pytest.mark.parametrize("blur", [0, 4])
def test_outpaint_grows_the_canvas_and_keeps_the_original(tiny_model, init, blur):
    out = outpaint(tiny_model, InpaintRequest(PROMPT, init_image=init, steps=2, seed=1, mask_blur=blur),
                   left=16, right=8, up=8)[0]
    assert out.image.size == (88, 72) and "Size: 88x72," in out.infotext
    a, b = np.asarray(out.image)[8:, 16:80], np.asarray(init)
    r = blur_radius(blur)  # the blur blends the seam over r pixels; inside that, pixels are the input's
    assert np.array_equal(a[r:, r:64 - r], b[r:, r:64 - r])


def test_outpaint_canvas_stretches_the_edges(init):
    req = outpaint_request(InpaintRequest(PROMPT, init_image=init), right=8, down=16)
    canvas, m = np.asarray(req.init_image), np.asarray(req.mask)
    assert canvas.shape == (80, 72, 3)
    assert np.array_equal(canvas[:64, 70], np.asarray(init)[:, 63])
    assert (m[:64, :64] == 0).all() and (m[64:] == 255).all() and (m[:, 64:] == 255).all()


@pytest.mark.parametrize("kw,message", [
    ({"mask": Image.new("L", (32, 64), 255)}, "`mask` must be the size of `init_image` (64x64), got 32x64"),
    ({"mask": Image.new("L", (64, 64), 0)}, "`mask` is all black"),
    ({"mask": None}, "inpainting needs a `mask` (white = repaint) or a `mask_prompt`"),
    ({"inpainting_fill": 4}, "`inpainting_fill` must be one of 0 (fill), 1 (original), 2 (latent noise), 3 (latent nothing), got 4"),
    ({"mask_blur": -1}, "`mask_blur` must be between 0 and 64, got -1"),
    ({"denoising_strength": 1.5}, "`denoising_strength` must be a number from 0"),
    ({"keep_edges": 3}, "`keep_edges` must be a number from 0 to 2 (0: off), got 3"),
])
def test_bad_input_names_the_field(tiny_model, init, mask, kw, message):
    with pytest.raises(InvalidArgument) as e:
        run(tiny_model, init, kw.pop("mask", mask), **kw)
    assert message in str(e.value)


@pytest.mark.parametrize("sides,message", [
    ({"left": 10}, "`left` must be a multiple of 8, got 10 (try 16)"),
    ({}, "give at least one of `left`, `right`, `up`, `down`"),
    ({"down": -8}, "`down` must be between 0 and 4096, got -8"),
    ({"right": 4096}, "at most 4096 pixels a side"),
])
def test_bad_outpaint_sides(init, sides, message):
    with pytest.raises(InvalidArgument) as e:
        outpaint_request(InpaintRequest(PROMPT, init_image=init), **sides)
    assert message in str(e.value)


def test_outpaint_makes_its_own_mask(init, mask):
    with pytest.raises(InvalidArgument, match="outpainting takes no `mask`"):
        outpaint_request(InpaintRequest(PROMPT, init_image=init, mask=mask), right=8)


def test_a_mask_from_words_repaints_what_its_mask_image_would(tiny_model):
    """``mask_prompt`` is the mask ``gouache.mask`` makes of the same words, pixel for pixel, and the
    infotext says which words and segmenter made it."""
    import gouache
    from gouache.tiny.shapes import ShapeSpec, draw

    image = draw(ShapeSpec("red", "circle", "blue", 30, 34, 36))
    words = dict(mask_threshold=0.5, mask_dilate=1)
    mask = gouache.mask(image, "the background", threshold=0.5, dilate=1)
    by_image = inpaint(tiny_model, InpaintRequest(PROMPT, init_image=image, mask=mask, steps=3, seed=4))[0]
    by_words = inpaint(tiny_model, InpaintRequest(PROMPT, init_image=image, mask_prompt="the background", steps=3,
                                                  seed=4, **words))[0]
    assert np.array_equal(np.asarray(by_image.image), np.asarray(by_words.image))
    assert "Mask prompt: the background, Mask threshold: 0.5, Mask dilate: 1, Mask refine: 4, Segmenter: gouache-tiny-clipseg" \
        in by_words.infotext
    assert "Mask prompt" not in by_image.infotext


@pytest.mark.parametrize("kw, message", [
    ({"mask_prompt": "the background", "mask": Image.new("L", (64, 64), 255)}, "not both"),
    ({"mask_prompt": "the background", "mask_threshold": 1.2}, "`mask_threshold` must be a number"),
    ({"mask_prompt": "the background", "mask_dilate": -1}, "`mask_dilate` must be between"),
    ({"mask_prompt": " "}, "must name something"),
])
def test_a_mask_from_words_is_checked(init, kw, message):
    with pytest.raises(InvalidArgument, match=message):
        InpaintRequest(PROMPT, init_image=init, **kw).validate()


def test_outpainting_takes_no_words(init):
    with pytest.raises(InvalidArgument, match="outpainting takes no `mask` or `mask_prompt`"):
        outpaint_request(InpaintRequest(PROMPT, init_image=init, mask_prompt="the sky"), right=8)


def test_keep_edges_is_a_canny_unit_on_the_image(tiny_model, init, mask):
    """``keep_edges`` is the model's default canny ControlNet on the init image at that weight: the same
    image as that unit given by hand, and the infotext records the unit (so --from remakes it)."""
    from gouache.control.spec import ControlSpec

    kept = run(tiny_model, init, mask, keep_edges=0.8)[0]
    by_hand = run(tiny_model, init, mask, controls=[ControlSpec("canny", None, weight=0.8)])[0]
    plain = run(tiny_model, init, mask)[0]
    assert np.array_equal(np.asarray(kept.image), np.asarray(by_hand.image))
    assert not np.array_equal(np.asarray(kept.image), np.asarray(plain.image))
    assert "ControlNet 0: " in kept.infotext and "Weight: 0.8" in kept.infotext


def test_keep_edges_leaves_given_units_alone_and_needs_a_default_edge_net(tiny_model, init, mask):
    from gouache.control.spec import ControlSpec
    from gouache.pipelines.inpaint import with_kept_edges

    mine = ControlSpec("canny", init, weight=0.3)
    req = InpaintRequest(PROMPT, init_image=init, mask=mask, keep_edges=1.0, controls=[mine])
    assert with_kept_edges(tiny_model, req).controls == [mine]

    class Other:
        name = "sd15-somewhere"

    with pytest.raises(InvalidArgument, match="sd15-somewhere has none; give a canny ControlNet unit yourself"):
        with_kept_edges(Other, InpaintRequest(PROMPT, init_image=init, mask=mask, keep_edges=1.0))
