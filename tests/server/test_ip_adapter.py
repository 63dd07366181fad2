"""IP-Adapter over the A1111 API: sd-webui-controlnet's IP-Adapter units, through a real HTTP client."""

import base64
import io
import json

import pytest
from PIL import Image

API = "/sdapi/v1"
SMALL = {"prompt": "on a blue background", "steps": 2, "width": 64, "height": 64, "seed": 1}
RED = Image.new("RGB", (64, 64), (220, 30, 30))


def b64(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def pixels(text):
    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB").tobytes()


def body(*units, **extra):
    return {**SMALL, **extra, "alwayson_scripts": {"controlnet": {"args": list(units)}}}


UNIT = {"enabled": True, "module": "ip-adapter_clip_sd15", "model": "tiny-ip [12345678]", "weight": 0.8,
        "image": b64(RED), "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": 0, "pixel_perfect": False}


def test_an_ip_adapter_unit_is_an_image_prompt_not_a_controlnet(client, tiny_ip_adapter):
    plain = client.post(f"{API}/txt2img", json=SMALL).json()
    r = client.post(f"{API}/txt2img", json=body(UNIT))
    assert r.status_code == 200, r.text
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert 'IP-Adapter 0: "Model: tiny-ip [' in text and "Weight: 0.8" in text and "ControlNet" not in text
    assert pixels(r.json()["images"][0]) != pixels(plain["images"][0])
    off = client.post(f"{API}/txt2img", json=body({**UNIT, "weight": 0})).json()  # scale 0: the image without it
    assert pixels(off["images"][0]) == pixels(plain["images"][0])
    styled = client.post(f"{API}/img2img", json=body({**UNIT, "ip_style": True}, init_images=[b64(RED)]))
    assert styled.status_code == 200 and "Style: True" in json.loads(styled.json()["info"])["infotexts"][0]


@pytest.mark.parametrize("unit,words", [
    ({"model": "no-such-adapter"}, "unknown IP-Adapter 'no-such-adapter'"),
    ({"model": "../../etc/passwd"}, "a name, not a path"),
    ({"model": None}, "name the IP-Adapter"),
    ({"image": ""}, "without `image`"),
    ({"image": b64(RED)[:40] + "!!"}, "image"),
    ({"weight": 5}, "scale` must be a number from 0 to 2"),
    ({"guidance_end": 0.5}, "acts on every step"),
    ({"module": "ip-adapter_face_id_plus"}, "FaceID"),
    ({"ip_style": "yes"}, "ip_style` must be true or false"),
])
def test_bad_ip_adapter_units_are_422_with_a_message(client, tiny_ip_adapter, unit, words):
    r = client.post(f"{API}/txt2img", json=body({**UNIT, **unit}))
    assert r.status_code == 422 and words in r.text, r.text


def test_webuiapis_controlnet_unit_carries_an_ip_adapter(live_server, tiny_ip_adapter):
    webuiapi = pytest.importorskip("webuiapi")
    url, _ = live_server()
    api = webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1", sampler="Euler a", steps=2)
    unit = webuiapi.ControlNetUnit(image=RED, module="ip-adapter_clip_sd15", model="tiny-ip", weight=0.6)
    result = api.txt2img(prompt="on a blue background", width=64, height=64, seed=3, controlnet_units=[unit])
    assert result.image.size == (64, 64)
    assert "IP-Adapter 0:" in result.info["infotexts"][0] and "Weight: 0.6" in result.info["infotexts"][0]


def test_the_ip_adapters_are_listed(client, tiny_ip_adapter):
    listed = {e["name"]: e for e in client.get(f"{API}/ip-adapters").json()}
    assert listed["tiny-ip"]["path"] == str(tiny_ip_adapter) and listed["tiny-ip"]["builtin"] is False


def test_an_image_prompt_over_max_pixels_is_refused_for_ui_requests_too(tiny_ip_adapter):
    """The UI builds its requests itself; the server's limits check their image prompts as the API's
    decoding checks a unit's image."""
    from gouache.adapters.ip_spec import IPAdapterSpec
    from gouache.pipelines.request import GenerationRequest
    from gouache.server.config import ServerConfig
    from gouache.server.schemas import RequestTooLarge, check_limits

    request = GenerationRequest("x", ip_adapters=[IPAdapterSpec("tiny-ip", [Image.new("RGB", (100, 100))])])
    with pytest.raises(RequestTooLarge, match=r"`ip_adapters\[0\].images\[0\]` is 100x100"):
        check_limits(request, ServerConfig(max_pixels=64 * 64))
