"""``import gouache``: the Python functions the README shows, called as it shows them."""

import gouache


def test_txt2img_takes_a_preview_callback_as_the_readme_says(tiny_model):
    previews = []
    images = gouache.txt2img("a red circle on a blue background", model=tiny_model, seed=1, steps=4,
                             preview=lambda step, total, image: previews.append((step, total, image.size)),
                             preview_every=2)
    assert len(images) == 1 and images[0].image.size == (64, 64)
    assert [p[:2] for p in previews] == [(2, 4), (4, 4)] and previews[0][2][0] > 0


def test_library_use_is_quiet(tmp_path):
    """No progress bars or library warnings on stderr from a plain call (first use included)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GOUACHE_HOME": str(tmp_path / "home")}
    code = "import gouache; print(gouache.txt2img('a red circle on a blue background', seed=1, steps=2)[0].image.size)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(64, 64)" and done.stderr == ""


def test_progress_is_opt_in(tiny_model, capsys):
    """Quiet by default; progress=True draws a bar on stderr; a function gets (i, n); anything else
    is one clear error."""
    import pytest

    from gouache.errors import InvalidArgument

    gouache.txt2img("a red circle on a blue background", model=tiny_model, steps=3, seed=1)
    assert capsys.readouterr().err == ""
    gouache.txt2img("a red circle on a blue background", model=tiny_model, steps=3, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "txt2img:" in err and "/3 [" in err
    seen = []
    gouache.txt2img("a red circle on a blue background", model=tiny_model, steps=3, seed=1,
                    progress=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (3, 3)
    with pytest.raises(InvalidArgument, match="`progress` must be True"):
        gouache.txt2img("a red circle on a blue background", model=tiny_model, steps=3, progress="yes")


def test_image_prompts_in_python_by_name_or_spec(tiny_model, tiny_ip_adapter):
    import pytest
    from PIL import Image

    from gouache.adapters.ip_spec import IPAdapterSpec

    red = Image.new("RGB", (64, 64), (220, 30, 30))
    by_name = gouache.txt2img("on a blue background", model=tiny_model, seed=2, steps=4, ip_adapter="tiny-ip:0.7",
                              ip_image=red)[0]
    by_spec = gouache.txt2img("on a blue background", model=tiny_model, seed=2, steps=4,
                              ip_adapter=IPAdapterSpec("tiny-ip", [red], 0.7))[0]
    assert by_name.image.tobytes() == by_spec.image.tobytes() and "Weight: 0.7" in by_name.infotext
    init = Image.new("RGB", (64, 64), (35, 70, 220))
    assert gouache.img2img("a circle", init, model=tiny_model, steps=2, ip_adapter="tiny-ip", ip_image=red,
                           ip_style=True)[0].request.ip_adapters[0].style
    with pytest.raises(gouache.GouacheError, match="`ip_image` and `ip_style` need `ip_adapter`"):
        gouache.txt2img("x", model=tiny_model, ip_image=red)
    with pytest.raises(gouache.GouacheError, match="has no image prompt"):
        gouache.txt2img("x", model=tiny_model, ip_adapter="tiny-ip")
