"""``script_name: "x/y/z plot"`` and ``"prompt matrix"`` over A1111's API: ``script_args`` as its UI
sends them, the grid(s) first and then the images, the same images as plain requests, and a 4xx
with one clear line for what cannot be plotted."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from gouache.metadata.infotext import parse_infotext

API = "/sdapi/v1"
BODY = {"prompt": "a red circle on a blue background", "steps": 2, "seed": 4}


def xyz_args(x_type, x_values, y_type=0, y_values="", z_type=0, z_values="", lone=True, **flags):
    """A1111 1.10's script_args of the X/Y/Z plot."""
    return [x_type, x_values, [], y_type, y_values, [], z_type, z_values, [], flags.get("legend", True), lone,
            flags.get("sub_grids", False), False, flags.get("vary_x", False), False, False, 0, False]


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_xyz_answers_the_grid_then_the_images_of_plain_requests(client):
    # 9 is A1111's txt2img index of Sampler, 6 of CFG Scale
    body = {**BODY, "script_name": "X/Y/Z plot", "script_args": xyz_args(9, "Euler, Heun", 6, "3, 6")}
    answer = client.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    images, info = answer.json()["images"], json.loads(answer.json()["info"])
    assert len(images) == 5 and info["index_of_first_image"] == 1 and len(info["infotexts"]) == 5
    grid = decoded(images[0])
    params = parse_infotext(grid.info["parameters"]).params
    assert (params["Script"], params["X Type"], params["Y Type"]) == ("X/Y/Z plot", "Sampler", "CFG scale")
    assert grid.width > 128 and grid.height > 128
    plain = client.post(f"{API}/txt2img", json={**BODY, "sampler_name": "Heun", "cfg_scale": 6}).json()["images"][0]
    assert np.array_equal(np.asarray(decoded(images[4])), np.asarray(decoded(plain)))


def test_axes_by_label_and_without_lone_images(client):
    body = {**BODY, "script_name": "x/y/z plot", "script_args": xyz_args("Steps", "1-2", lone=False)}
    answer = client.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["images"]) == 1  # the grid alone, as A1111 without include_lone_images


def test_a_z_axis_answers_one_grid_of_all_then_each_with_sub_grids(client):
    body = {**BODY, "script_name": "x/y/z plot",
            "script_args": xyz_args(4, "1, 2", z_type=1, z_values="1, 2", lone=False, sub_grids=True)}
    images = client.post(f"{API}/txt2img", json=body).json()["images"]
    assert len(images) == 3
    assert decoded(images[0]).width == decoded(images[1]).width + decoded(images[2]).width


def test_prompt_matrix_over_the_api(client):
    body = {**BODY, "prompt": "a red circle|outline style", "script_name": "prompt matrix",
            "script_args": [False, False, "positive", "comma", 0]}
    answer = client.post(f"{API}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.json()["info"])
    assert len(answer.json()["images"]) == 3 and info["all_prompts"] == ["a red circle", "a red circle, outline style"]


def test_img2img_takes_a_plot_too(client):
    red = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(red, format="PNG")
    body = {**BODY, "init_images": [base64.b64encode(red.getvalue()).decode()], "script_name": "x/y/z plot",
            "script_args": xyz_args(24, "0.3, 0.6")}  # 24: Denoising in A1111's img2img list
    answer = client.post(f"{API}/img2img", json=body)
    assert answer.status_code == 200, answer.text
    assert [parse_infotext(t).params["Denoising strength"] for t in json.loads(answer.json()["info"])["infotexts"][1:]] \
        == ["0.3", "0.6"]


def test_the_scripts_are_listed(client):
    assert client.get(f"{API}/scripts").json() == {"txt2img": ["prompt matrix", "x/y/z plot"],
                                                   "img2img": ["prompt matrix", "x/y/z plot"]}


@pytest.mark.parametrize("script, args, message", [
    ("x/y/z plot", xyz_args(99, "1"), "is not an index of A1111's txt2img axis list"),
    ("x/y/z plot", xyz_args(23, "0, 1"), "the axis 'Eta' is A1111's, which gouache does not have"),
    ("x/y/z plot", xyz_args("Colour", "red"), "unknown axis 'Colour'"),
    ("x/y/z plot", xyz_args(4, "1-"), "Steps: '1-' is not a whole number or a range"),
    ("x/y/z plot", xyz_args(4, ""), "Steps: the axis has no values"),
    ("x/y/z plot", xyz_args(4, "1-20", 1, "1-21"), "the plot makes 420 images"),
    ("x/y/z plot", xyz_args(4, "100, 200"), "over this server's limit of 150"),
    ("x/y/z plot", xyz_args(7, "square, star"), "'square' is not in the prompt"),
    ("x/y/z plot", [], "the X/Y/Z plot has no axis"),
    ("x/y/z plot", xyz_args(11, "../../etc/passwd"), "is a path"),
    ("x/y/z plot", xyz_args(11, "nope.safetensors"), "unknown model"),
    ("x/y/z plot", [4, 5], "must be text"),
    ("x/y/z plot", xyz_args(4, "1") + [1, 2, 3], "takes at most 18"),
    ("prompt matrix", [], "has no optional parts"),
    ("prompt matrix", ["yes"], "`script_args[0]` must be true or false"),
])
def test_bad_plots_are_a_422_with_one_line(client, script, args, message):
    answer = client.post(f"{API}/txt2img", json={**BODY, "script_name": script, "script_args": args})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert message in detail and "\n" not in detail
