"""An existing client, unchanged: the ``webuiapi`` package against a real ``gouache serve``."""

import pytest
from PIL import Image

webuiapi = pytest.importorskip("webuiapi")


def test_webuiapi_txt2img_and_img2img(live_server):
    url, _ = live_server(api_auth="ann:secret")
    api = webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1", sampler="Euler a", steps=2, username="ann", password="secret")
    result = api.txt2img(prompt="a red circle on a blue background", width=64, height=64, seed=5, cfg_scale=5)
    assert result.image.size == (64, 64)
    assert result.info["all_seeds"] == [5] and result.parameters["steps"] == 2
    assert "Sampler: Euler a" in result.image.info["parameters"]

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    result = api.img2img(images=[result.image], mask_image=mask, prompt="a blue square", width=64, height=64,
                         denoising_strength=0.6, seed=6)
    assert result.image.size == (64, 64) and result.info["all_seeds"] == [6]

    result = api.img2img(images=[result.image], prompt="a blue square", width=64, height=64, seed=7)
    assert result.image.size == (64, 64) and "Denoising strength: 0.75" in result.info["infotexts"][0]
    assert api.get_sd_models()[0]["model_name"] == "gouache-tiny"


def test_webuiapi_without_the_password_is_refused(live_server):
    url, _ = live_server(api_auth="ann:secret")
    api = webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1", steps=2)
    with pytest.raises(RuntimeError, match="401"):
        api.txt2img(prompt="x", width=64, height=64)
