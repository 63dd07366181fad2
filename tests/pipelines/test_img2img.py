"""Image-to-image with gouache-tiny: what the strength does, seeds, sizes, metadata, bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.pipelines.img2img import img2img
from gouache.pipelines.model import pixels_of
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest
from gouache.pipelines.txt2img import txt2img

PROMPT = "a blue square on a yellow background"


@pytest.fixture(scope="module")
def init():
    """A red circle on white, drawn (not generated), so the test does not depend on the weights."""
    y, x = np.mgrid[:64, :64]
    a = np.full((64, 64, 3), 255, np.uint8)
    a[(x - 32) ** 2 + (y - 32) ** 2 < 18 ** 2] = (220, 30, 30)
    return Image.fromarray(a)


def run(model, init, **kw):
    kw = {"steps": 4, "seed": 5, "denoising_strength": 0.5, **kw}
    return img2img(model, Img2ImgRequest(PROMPT, init_image=init, **kw))


def arr(image):
    return np.asarray(image)


@pytest.fixture
def unet_calls(tiny_model, monkeypatch):
    """Counts UNet forward passes (guidance batches cond and uncond into one)."""
    calls = []
    forward = tiny_model.unet.forward

    def counting(*args, **kw):
        calls.append(args[0].shape)
        return forward(*args, **kw)

    monkeypatch.setattr(tiny_model.unet, "forward", counting)
    return calls


def test_strength_zero_gives_the_image_back_through_the_vae(tiny_model, init, unet_calls):
    from gouache.speed.threads import generation_threads, torch_threads

    out = run(tiny_model, init, denoising_strength=0.0)[0]
    with torch_threads(generation_threads(8 * 8)):  # encoded and decoded in the generation's scope
        (expected,) = tiny_model.decode(tiny_model.encode(pixels_of(init)))  # (a thread count changes rounding)
    assert np.array_equal(arr(out.image), arr(expected))  # VAE round trip: no step ran
    assert unet_calls == []
    assert "Denoising strength: 0.0" in out.infotext


def test_strength_one_ignores_the_image(tiny_model, init):
    out = run(tiny_model, init, denoising_strength=1.0)[0]
    other = run(tiny_model, Image.new("RGB", (64, 64), "green"), denoising_strength=1.0)[0]
    plain = txt2img(tiny_model, GenerationRequest(PROMPT, steps=4, seed=5))[0]
    assert np.array_equal(arr(out.image), arr(plain.image))
    assert np.array_equal(arr(out.image), arr(other.image))


@pytest.mark.parametrize("strength,calls", [(0.25, 1), (0.5, 2), (0.75, 3), (0.8, 3)])
def test_strength_runs_the_last_steps(tiny_model, init, unet_calls, strength, calls):
    out = run(tiny_model, init, denoising_strength=strength)[0]
    assert len(unet_calls) == calls  # int(4 · strength) steps, one guided UNet call each
    assert f"Denoising strength: {strength}," in out.infotext


def test_heun_calls_the_model_twice_a_step(tiny_model, init, unet_calls):
    run(tiny_model, init, denoising_strength=0.5, sampler="Heun")
    assert len(unet_calls) == 3  # 2 steps: first-order + correction, the last step first-order only


def test_same_seed_same_image_and_batch_seeds_follow(tiny_model, init):
    batch = run(tiny_model, init, batch_size=2, seed=10, sampler="Euler a")
    again = run(tiny_model, init, seed=11, sampler="Euler a")[0]
    assert [r.seed for r in batch] == [10, 11]
    assert np.array_equal(arr(batch[1].image), arr(again.image))
    assert not np.array_equal(arr(batch[0].image), arr(batch[1].image))


def test_the_image_steers_the_result(tiny_model, init):
    a = run(tiny_model, init, denoising_strength=0.5)[0]
    b = run(tiny_model, Image.new("RGB", (64, 64), "green"), denoising_strength=0.5)[0]
    assert not np.array_equal(arr(a.image), arr(b.image))


@pytest.mark.parametrize("size,kw,expected", [
    ((80, 72), {}, (80, 72)),  # the init image's size
    ((70, 99), {}, (64, 96)),  # rounded down to multiples of 8
    ((128, 64), {"width": 64, "height": 64, "resize_mode": 1}, (64, 64)),
    ((128, 64), {"width": 64, "height": 64, "resize_mode": 2}, (64, 64)),
])
def test_output_size(tiny_model, size, kw, expected):
    out = run(tiny_model, Image.new("RGB", size, "white"), steps=2, **kw)[0]
    assert out.image.size == expected and f"Size: {expected[0]}x{expected[1]}," in out.infotext


def test_sdxl_img2img(tiny_sdxl, init):
    out = img2img(tiny_sdxl, Img2ImgRequest(PROMPT, init_image=init, steps=2, seed=1, sampler="Euler"))[0]
    assert out.image.size == (64, 64)


@pytest.mark.parametrize("kw,message", [
    ({"denoising_strength": 1.5}, "`denoising_strength` must be a number from 0 to 1 (0 keeps the image, 1 replaces it), got 1.5"),
    ({"denoising_strength": -0.1}, "got -0.1"),
    ({"denoising_strength": "0.5"}, "got '0.5'"),
    ({"resize_mode": 3}, "`resize_mode` must be one of 0 (Just resize), 1 (Crop and resize), 2 (Resize and fill), got 3"),
    ({"init_image": None}, "`init_image` must be a PIL image, got NoneType"),
    ({"init_image": "in.png"}, "gouache.images.load_image"),
    ({"steps": 0}, "`steps` must be between 1 and 1000, got 0"),
])
def test_bad_input_names_the_field(tiny_model, init, kw, message):
    with pytest.raises(InvalidArgument) as e:
        run(tiny_model, kw.pop("init_image", init), **kw)
    assert message in str(e.value)


def test_the_encoder_is_deterministic(tiny_model, init):
    assert torch.equal(tiny_model.encode(pixels_of(init)), tiny_model.encode(pixels_of(init)))
