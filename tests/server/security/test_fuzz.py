"""A seeded fuzz run against a real uvicorn server: thousands of generated request bodies, metadata
texts and image payloads, and not one answer of 500 or more; the server still answers afterwards.

The server's limits are set small (64-128 px, 3 steps) so the few bodies that are valid generate
in a moment on gouache-tiny."""

import base64
import io
import json
import random
import struct
import zlib

import httpx
from PIL import Image, PngImagePlugin

API = "/sdapi/v1"
SEED = 20261204
BODIES = 2400


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims another size (a decompression bomb's header)."""
    data = bytearray(_encode(Image.new("RGB", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def image_payloads() -> list[bytes]:
    """Every kind of file a client might send as an image, good and bad."""
    rgb = Image.new("RGB", (64, 64), (20, 40, 200))
    png = _encode(rgb, "PNG")
    with_text = PngImagePlugin.PngInfo()
    with_text.add_text("parameters", "a\nSteps: 2, Sampler: Euler, Seed: 1, Size: 64x64")
    return [
        png, _encode(rgb, "JPEG"), _encode(rgb, "WEBP"), _encode(rgb, "PNG", pnginfo=with_text),
        _encode(Image.new("I;16", (64, 64), 300), "PNG"), _encode(Image.new("CMYK", (64, 64)), "JPEG"),
        _encode(Image.new("P", (64, 64)), "PNG", transparency=0), _encode(Image.new("LA", (64, 64)), "PNG"),
        _encode(Image.new("1", (64, 64)), "PNG"), _encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"),
        _encode(rgb, "PPM"), _encode(rgb, "BMP"), _encode(rgb, "TIFF"), _encode(rgb, "GIF"), _encode(rgb, "ICO"),
        _encode(Image.new("RGB", (4096, 4096)), "PNG"),  # over the server's pixel limit
        _png_claiming(100_000, 100_000), _png_claiming(0, 0), _png_claiming(2**31 - 1, 1),
        png[: len(png) // 2], png[:40], png[:8], b"", b"GIF89a" + b"\0" * 20, b"\x89PNG\r\n\x1a\n" + b"\xff" * 100,
        b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 30, b"\xff\xd8\xff\xe0" + b"\0" * 50, bytes(range(256)),
    ]


def image_texts(rng: random.Random, payloads: list[bytes]) -> str | object:
    """A value for an image field: base64, a data URL, or something that is not an image at all."""
    kind = rng.random()
    data = rng.choice(payloads)
    if kind < 0.55:
        return base64.b64encode(data).decode()
    if kind < 0.7:
        return f"data:image/png;base64,{base64.b64encode(data).decode()}"
    return rng.choice(["", "not base64!!", "http://127.0.0.1:9/x.png", "file:///etc/passwd", "/etc/passwd",
                       "data:image/png,abc", "data:;base64,", 5, 1.5, None, True, [], {"image": "x"}, "=" * 10,
                       base64.b64encode(b"x" * 1000).decode()])


NUMBERS = [0, 1, 2, 3, -1, -2**63, 2**64, 10**30, 0.5, -0.5, 1e308, -1e308, 7.5, 64, 72, 128, 4096, 4097, 63,
           "3", "64", "", "x", "NaN", "Infinity", "1e999", "9" * 50, None, True, False, [], {}, [1], {"a": 1}]
TEXT = ["", "a red circle", "(red:1.5) circle", "[a:b:0.5]", "[a|b|c]", "a AND b :0.5", "BREAK", "<lora:x:1>",
        "<lora:../../etc/passwd:1>", "((((((((", "]]]]]", "\\", "a" * 5000, " " * 3000, "\x00", "é中文🎨", "AND " * 20,
        "[a:[b:[c:d:1]:2]:3]", "(x:1e308)", "(x:" + "9" * 400 + ")", "[a:b:" + "9" * 400 + "]", None, 5, ["a"], {}]
NAMES = ["gouache-tiny", "", None, "../../etc/passwd", "/etc/passwd", "C:\\Windows", "~/.ssh", "gouache-tiny [a9c104e48a]",
         "nope", 5, [], "gouache-tiny-edges", "x" * 300, "\x00", "."]
SAMPLERS = ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "ddim", "dpmpp_2m", "nope", "", 5, None]
FIELDS = {
    "prompt": TEXT, "negative_prompt": TEXT, "seed": NUMBERS, "subseed": NUMBERS, "subseed_strength": NUMBERS,
    "steps": NUMBERS, "cfg_scale": NUMBERS, "width": NUMBERS, "height": NUMBERS, "batch_size": NUMBERS,
    "n_iter": NUMBERS, "sampler_name": SAMPLERS, "sampler_index": SAMPLERS, "scheduler": ["Karras", "karras", "nope", 5],
    "enable_hr": [True, False, "yes", 5], "hr_scale": NUMBERS, "hr_upscaler": ["Latent", "Lanczos", "R-ESRGAN 4x+", 5],
    "hr_second_pass_steps": NUMBERS, "hr_resize_x": NUMBERS, "hr_resize_y": NUMBERS, "denoising_strength": NUMBERS,
    "refiner_checkpoint": NAMES, "refiner_switch_at": NUMBERS, "script_name": [None, "", "x/y/z plot", 5],
    "script_args": [[], [1, 2], "x", None], "send_images": [True, False, "no", None], "save_images": [False, "x"],
    "styles": [[], ["a"], "x", [5]], "comments": [{}, "x", None], "override_settings_restore_afterwards": [True, "x"],
    "unknown_field": NUMBERS, "resize_mode": NUMBERS, "mask_blur": NUMBERS, "inpainting_fill": NUMBERS,
    "inpaint_full_res": [True, False, 5], "inpaint_full_res_padding": NUMBERS, "inpainting_mask_invert": NUMBERS,
    "include_init_images": [True, False, "x"], "image_cfg_scale": NUMBERS,
}
OPTIONS = {"sd_model_checkpoint": NAMES, "CLIP_stop_at_last_layers": NUMBERS, "return_grid": [True, "x", 5],
           "show_progress_every_n_steps": NUMBERS, "token_merging_ratio": NUMBERS, "deepcache_interval": NUMBERS,
           "cfg_truncation": NUMBERS, "samples_format": ["png", 5], "outdir_samples": ["/etc", "../x"]}
KEYS = ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model", "Model hash", "Clip skip",
        "Denoising strength", "Hires upscale", "Hires steps", "Hires upscaler", "Variation seed",
        "Variation seed strength", "Token merging ratio", "DeepCache interval", "CFG truncation", "Emphasis",
        "Refiner", "Refiner switch at", "Guidance colour", "Guidance scale", "Guidance every", "ControlNet 0",
        "ControlNet 1", "Lora hashes", "TI hashes", "Mask blur", "Version", "Old prompt editing timelines"]
VALUES = ["2", "20", "0", "-1", "9" * 60, "1e999", "nan", "inf", "7.5", "64x64", "0x0", "99999999999x1", "x",
          "Euler", "gouache-tiny", "/etc/passwd", '"a, b: c"', '"unterminated', "1,2,3", "0,0,999", '""', "",
          '"Module: canny, Model: /etc/passwd, Weight: 1e999, Image: /etc/passwd"',
          '"Module: canny, Model: gouache-tiny-edges, Weight: x, Guidance Start: nan, Image: ../../x.png"', "True"]


def metadata_text(rng: random.Random) -> str:
    """An infotext: prompts, maybe a negative prompt, and a settings line of known and odd keys."""
    lines = [str(rng.choice(TEXT[:17]))]
    if rng.random() < 0.3:
        lines.append("Negative prompt: " + str(rng.choice(TEXT[:17])))
    pairs = [f"{rng.choice(KEYS + ['x', 'Key with spaces', '9'])}: {rng.choice(VALUES)}"
             for _ in range(rng.randint(0, 12))]
    lines.append(rng.choice([", ", ",", ",  ", ", , "]).join(pairs))
    text = "\n".join(lines)
    if rng.random() < 0.1:  # a cut, or bytes that are hard to read back
        text = text[: rng.randint(0, len(text))] + rng.choice(["", "\r\n", "\x00", '"', "\\"])
    return text


def generation_body(rng: random.Random, payloads: list[bytes], img2img: bool) -> dict:
    body = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64}
    for name in rng.sample(sorted(FIELDS), rng.randint(1, 6)):
        body[name] = rng.choice(FIELDS[name])
    if rng.random() < 0.2:
        body["infotext"] = metadata_text(rng)
    if rng.random() < 0.15:
        body["override_settings"] = {k: rng.choice(v) for k, v in rng.sample(sorted(OPTIONS.items()), 2)}
    if rng.random() < 0.15:
        units = [{"module": rng.choice(["canny", "none", "depth_midas", "nope", 5, None]),
                  "model": rng.choice(NAMES), "weight": rng.choice(NUMBERS), "enabled": rng.choice([True, False, 1]),
                  "image": image_texts(rng, payloads), "guidance_start": rng.choice(NUMBERS)}
                 for _ in range(rng.randint(0, 3))]
        body["alwayson_scripts"] = rng.choice([{"controlnet": {"args": units}}, {"ControlNet": units},
                                               {"controlnet": "x"}, {"controlnet": {"args": 5}}, {"x": 1}])
    if img2img:
        if rng.random() < 0.9:
            body["init_images"] = rng.choice([[image_texts(rng, payloads)], [], "x", [image_texts(rng, payloads)] * 2])
        if rng.random() < 0.3:
            body["mask"] = image_texts(rng, payloads)
    return body


def requests(rng: random.Random):
    """``(method, route, json body or raw bytes)`` for the whole run."""
    payloads = image_payloads()
    for i in range(BODIES):
        kind = rng.random()
        if kind < 0.35:
            yield "POST", "txt2img", generation_body(rng, payloads, img2img=False)
        elif kind < 0.6:
            yield "POST", "img2img", generation_body(rng, payloads, img2img=True)
        elif kind < 0.8:
            image = Image.new("RGB", (8, 8))
            info = PngImagePlugin.PngInfo()
            info.add_text("parameters", metadata_text(rng), zip=rng.random() < 0.3)
            payload = _encode(image, "PNG", pnginfo=info) if rng.random() < 0.7 else rng.choice(payloads)
            yield "POST", "png-info", {"image": base64.b64encode(payload).decode()}
        elif kind < 0.9:
            yield "POST", "options", {k: rng.choice(v) for k, v in rng.sample(sorted(OPTIONS.items()), rng.randint(1, 3))}
        else:
            route = rng.choice(["txt2img", "img2img", "png-info", "options", "interrupt"])
            raw = rng.choice([b"", b"{", b"[]", b"null", b"5", b'"x"', b'{"prompt": 1e999}', b"\xff\xfe",
                              b'{"steps": ' + b"9" * 5000 + b"}", b'{"a": ' * 200 + b"1" + b"}" * 200,
                              json.dumps({"prompt": "x", "width": float("nan")}).encode()])
            yield "POST", route, raw


def test_fuzzed_requests_never_get_a_server_error(live_server):
    base, _ = live_server(max_pixels=128 * 128, max_steps=3, max_batch=2, max_job_pixels=2 * 128 * 128)
    rng = random.Random(SEED)
    statuses, failures = {}, []
    with httpx.Client(base_url=base + API, timeout=60) as client:
        for method, route, body in requests(rng):
            if isinstance(body, bytes):
                r = client.request(method, route, content=body, headers={"content-type": "application/json"})
            else:
                r = client.request(method, route, content=json.dumps(body).encode(),
                                   headers={"content-type": "application/json"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                failures.append((route, str(body)[:300], r.text[:300]))
            else:
                assert "Traceback" not in r.text
        assert sum(statuses.values()) >= 2000
        assert not failures, f"{len(failures)} server errors of {BODIES}, e.g. {failures[:3]}; statuses {statuses}"
        assert statuses.get(200, 0) > 20, statuses  # some bodies were good and made images
        # the server still answers, and still generates
        assert client.get("progress").status_code == 200
        r = client.post("txt2img", json={"prompt": "a red circle", "steps": 2, "width": 64, "height": 64})
        assert r.status_code == 200 and r.json()["images"]
