"""Styles and dynamic prompts around the pipelines (gouache.pipelines.prompting), on gouache-tiny:
each image's prompt is drawn from its own seed, is the prompt its infotext and request hold, and
makes the image that prompt makes without any template."""

import numpy as np
import pytest

from gouache.metadata.infotext import parse_infotext
from gouache.pipelines.request import GenerationRequest, Img2ImgRequest, request_from_infotext
from gouache.pipelines.txt2img import txt2img
from gouache.prompts.dynamic import resolve

TEMPLATE = "a __colour__ __shape__ on a {yellow|purple} background"


@pytest.fixture
def home(tmp_path, monkeypatch, prompt_home):
    wildcards = {"colour": "red\nblue\nwhite\n", "shape": "circle\nsquare\ntriangle\n"}
    path = prompt_home.make_home(tmp_path / "home", wildcards)
    monkeypatch.setenv("GOUACHE_HOME", str(path))
    return path


def pixels(result):
    return np.asarray(result.image)


def test_every_image_carries_the_prompt_its_own_seed_picked(home, tiny_model):
    from gouache.tiny.judge import read_image

    images = txt2img(tiny_model, GenerationRequest(TEMPLATE, steps=8, seed=40, batch_size=4, n_iter=2))
    assert [r.seed for r in images] == list(range(40, 48))
    agree = 0
    for r in images:
        assert r.request.prompt == resolve(TEMPLATE, r.seed)  # image k: seed + k, whatever its batch
        parsed = parse_infotext(r.infotext)
        assert (parsed.prompt, parsed.params["Template"]) == (r.request.prompt, TEMPLATE)
        reading = read_image(r.image)
        agree += f"a {reading.colour} {reading.shape} on a {reading.background} background" == r.request.prompt
    assert len({r.request.prompt for r in images}) > 1
    assert agree >= 6, f"the judge agrees on {agree}/8"


def test_an_image_is_the_one_its_resolved_prompt_makes_and_its_infotext_makes_it_again(home, tiny_model):
    batch = txt2img(tiny_model, GenerationRequest(TEMPLATE, steps=3, seed=7, batch_size=3))
    third = batch[2]
    plain = txt2img(tiny_model, GenerationRequest(third.request.prompt, steps=3, seed=9))[0]
    again = txt2img(tiny_model, request_from_infotext(third.infotext))[0]
    assert np.array_equal(pixels(third), pixels(plain)) and np.array_equal(pixels(third), pixels(again))
    assert again.request.prompt == third.request.prompt


def test_seeds_pick_every_option(home):
    from gouache.pipelines.prompting import prompt_requests

    requests = prompt_requests(GenerationRequest(TEMPLATE, seed=0, batch_size=8, n_iter=20))
    prompts = [r.prompt for r in requests]
    words = {w for p in prompts for w in p.split()}
    assert {"red", "blue", "white", "circle", "square", "triangle", "yellow", "purple"} <= words
    again = prompt_requests(GenerationRequest(TEMPLATE, seed=0, batch_size=8, n_iter=20))
    assert [r.prompt for r in again] == prompts and [r.seed for r in again] == list(range(160))


def test_styles_apply_in_order_and_the_infotext_holds_the_styled_prompt(home, tiny_model):
    r = txt2img(tiny_model, GenerationRequest("a red circle on a blue background", steps=2, seed=1,
                                              styles=["outline", "Muted"]))[0]
    assert r.request.prompt == "a red circle on a blue background, outline style, muted colours"
    assert r.request.negative_prompt == "bright, saturated"
    assert r.infotext.startswith(r.request.prompt + "\nNegative prompt: bright, saturated\n")
    back = request_from_infotext(r.infotext)  # A1111's reader finds the styles again
    assert (back.prompt, back.negative_prompt, back.styles) == ("a red circle on a blue background", "", ("outline", "Muted"))


def test_literal_prompts_are_taken_as_written(home, tiny_model):
    r = txt2img(tiny_model, GenerationRequest("a {red|blue} __nothing__ circle", steps=1, seed=1, literal_prompts=True))
    assert r[0].request.prompt == "a {red|blue} __nothing__ circle" and "Template" not in r[0].params


def test_img2img_resolves_the_template_too(home, tiny_model):
    from PIL import Image

    from gouache.pipelines.img2img import img2img

    init = Image.new("RGB", (64, 64), "green")
    images = img2img(tiny_model, Img2ImgRequest(TEMPLATE, init_image=init, steps=2, seed=3, batch_size=2))
    assert [r.request.prompt for r in images] == [resolve(TEMPLATE, 3), resolve(TEMPLATE, 4)]


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": "a __colur__ circle"}, "unknown wildcard __colur__ (did you mean __colour__?)"),
    ({"prompt": "a {red circle"}, "never closed"),
    ({"prompt": "a circle", "styles": ["sketch"]}, "unknown style 'sketch'; available: outline, Muted"),
    ({"prompt": "a circle", "styles": "outline"}, "`styles` must be a list of style names"),
])
def test_a_bad_template_or_style_fails_before_any_step(home, kwargs, message):
    from gouache.errors import GouacheError

    with pytest.raises(GouacheError) as err:
        GenerationRequest(**kwargs).validate()
    assert message in str(err.value)
