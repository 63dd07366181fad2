"""Text-to-video on gouache-tiny with tiny random motion adapters (plumbing: the built-in
gouache-tiny-motion, trained elsewhere, is what makes real motion)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.pipelines.video import VideoRequest, txt2vid, video_request_from_infotext

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module", autouse=True)
def layouts(gouache_home, motion_layouts):
    return motion_layouts.write_layouts(gouache_home / "motion")


def vid(model, **kw):
    kw = {"steps": 4, "seed": 5, "frames": 4, "motion": "tiny-mm", **kw}
    return txt2vid(model, VideoRequest(kw.pop("prompt", PROMPT), **kw))[0]


def arrays(frames):
    return np.stack([np.asarray(f) for f in frames]).astype(int)


@pytest.mark.parametrize("motion", ["tiny-mm", "mm_tiny", "mm_tiny_ckpt"])
def test_every_layout_generates_a_clip_offline(tiny_model, motion):
    video = vid(tiny_model, motion=motion)
    assert len(video.frames) == 4 and video.frames[0].size == (64, 64)
    assert f"Motion module: {motion}," in video.infotext and "Frames: 4," in video.infotext


def test_layouts_of_the_same_weights_make_the_same_clip(tiny_model):
    a, b = vid(tiny_model, motion="tiny-mm"), vid(tiny_model, motion="mm_tiny")
    assert np.abs(arrays(a.frames) - arrays(b.frames)).max() <= 1


def test_the_motion_modules_tie_the_frames_together(tiny_model):
    moving, still = vid(tiny_model), vid(tiny_model, motion_scale=0.0)
    assert not np.array_equal(arrays(moving.frames), arrays(still.frames))


def test_scale_0_is_each_frame_made_alone_bit_for_bit(tiny_model):
    """--motion NAME:0: frame k is exactly the image `gouache generate` makes with seed + k."""
    video = vid(tiny_model, motion_scale=0.0, frames=3, seed=11)
    images = txt2img(tiny_model, GenerationRequest(PROMPT, steps=4, seed=11, batch_size=3))
    assert all(np.array_equal(np.asarray(f), np.asarray(i.image)) for f, i in zip(video.frames, images))


def test_64_frames_run_in_context_windows(tiny_model):
    """Plumbing only: random motion weights make no coherent motion to measure seams on
    (scripts/quality/video_windows.py measures them; tests/sampling/test_frames.py checks the blend)."""
    video = vid(tiny_model, frames=64, steps=3)
    assert len(video.frames) == 64 and len(video.windows) == 5 and all(len(w) == 16 for w in video.windows)
    assert "Context length: 16, Context overlap: 4" in video.infotext


def test_prompt_travel_changes_the_subject(tiny_model):
    from gouache.tiny.judge import read_image

    video = vid(tiny_model, prompt="0: a red circle on a blue background, 7: a blue square on a yellow background",
                frames=8, steps=8, motion_scale=0.0)
    first, last = read_image(video.frames[0]), read_image(video.frames[-1])
    assert (first.colour, first.shape, first.background) == ("red", "circle", "blue")
    assert (last.colour, last.shape, last.background) == ("blue", "square", "yellow")


def test_init_image_holds_the_first_frame(tiny_model):
    picture = txt2img(tiny_model, GenerationRequest("a green triangle on a white background", steps=6, seed=2))[0].image
    video = vid(tiny_model, init_image=picture, denoising_strength=0.9, frames=4)
    first = np.asarray(video.frames[0]).astype(int)
    assert np.abs(first - np.asarray(picture).astype(int)).mean() < 8  # through the VAE, not bit for bit
    assert "Init frames: first" in video.infotext


def test_infotext_gives_the_request_back(tiny_model):
    video = vid(tiny_model, fps=12.0, context_length=3, context_overlap=1, closed_loop=True, video_format="webp",
                prompt="a circle\n0: red\n3: blue")
    again = video_request_from_infotext(video.infotext)
    for name in ("prompt", "frames", "fps", "motion", "context_length", "context_overlap", "context_schedule",
                 "closed_loop", "video_format", "seed", "steps"):
        assert getattr(again, name) == getattr(video.request, name), name
    remade = txt2vid(tiny_model, dataclasses.replace(again, model=None))[0]
    assert np.array_equal(arrays(remade.frames), arrays(video.frames))
    assert "Context schedule: uniform" in video.infotext
    # a video made before the schedule was recorded ran in static windows, and is remade so
    older = video_request_from_infotext(video.infotext.replace(", Context schedule: uniform", ""))
    assert older.context_schedule == "static"


def test_free_init_samples_the_clip_again_and_records_it(tiny_model):
    """FreeInit's passes: a different clip from the same seed, the same one again each time, every
    pass's steps in the progress, and --from remakes it (its quality: docs/video.md)."""
    ticks = []
    once = vid(tiny_model)
    twice = txt2vid(tiny_model, VideoRequest(PROMPT, steps=4, seed=5, frames=4, motion="tiny-mm", free_init=2),
                    progress=lambda i, n: ticks.append((i, n)))[0]
    assert not np.array_equal(arrays(once.frames), arrays(twice.frames))
    assert ticks[-1] == (8, 8) and len(ticks) == 8
    assert "FreeInit: 2, FreeInit filter: butterworth, FreeInit ds: 0.25, FreeInit dt: 0.25" in twice.infotext
    assert "FreeInit" not in once.infotext
    again = video_request_from_infotext(twice.infotext)
    assert (again.free_init, again.free_init_filter, again.free_init_ds) == (2, "butterworth", 0.25)
    remade = txt2vid(tiny_model, dataclasses.replace(again, model=None))[0]
    assert np.array_equal(arrays(remade.frames), arrays(twice.frames))
    box = vid(tiny_model, free_init=2, free_init_filter="box", free_init_ds=0.5)
    assert not np.array_equal(arrays(box.frames), arrays(twice.frames))


def test_the_adapters_declared_settings_apply_where_the_request_leaves_them(tiny_model, gouache_home, tmp_path):
    """An adapter folder's gouache.json (gouache-tiny-motion's: guidance on every step) wins over the
    image model's default (gouache-tiny's: half the steps) but not over the request; the infotext
    records what ran, so --from remakes it."""
    import json
    import shutil

    folder = tmp_path / "tiny-mm-declared"
    shutil.copytree(gouache_home / "motion" / "tiny-mm", folder)
    (folder / "gouache.json").write_text(json.dumps({"generation_defaults": {"cfg_truncation": 1.0}}))
    plain, declared = vid(tiny_model), vid(tiny_model, motion=str(folder))
    assert "CFG truncation: 0.5" in plain.infotext and "CFG truncation: 1," in declared.infotext
    asked = vid(tiny_model, motion=str(folder), cfg_truncation=0.5)
    assert "CFG truncation: 0.5" in asked.infotext and np.array_equal(arrays(asked.frames), arrays(plain.frames))
    assert not np.array_equal(arrays(declared.frames), arrays(plain.frames))
    again = video_request_from_infotext(declared.infotext)
    assert again.cfg_truncation == 1.0
    still = vid(tiny_model, motion=str(folder), motion_scale=0.0)  # motion off: each frame is generate's image, its defaults
    assert "CFG truncation: 0.5" in still.infotext


def test_the_context_schedule_changes_only_clips_longer_than_a_window(tiny_model):
    uniform, static = vid(tiny_model, frames=8, context_length=4, context_overlap=1), \
        vid(tiny_model, frames=8, context_length=4, context_overlap=1, context_schedule="static")
    assert not np.array_equal(arrays(uniform.frames), arrays(static.frames))
    assert uniform.windows == static.windows  # the first step's, as recorded
    short = [vid(tiny_model, frames=4, context_schedule=s) for s in ("uniform", "static")]
    assert np.array_equal(arrays(short[0].frames), arrays(short[1].frames))


@pytest.mark.parametrize("change,message", [
    ({"frames": 0}, "`frames` must be between 1 and 256"),
    ({"frames": 257}, "`frames` must be between 1 and 256"),
    ({"video_format": "avi"}, "`video_format` must be one of gif, webp, mp4, png"),
    ({"batch_size": 2}, "is not for video"),
    ({"context_overlap": 16}, "`context_overlap` must be between 0 and 15"),
    ({"context_schedule": "looped"}, "`context_schedule` must be one of uniform, static"),
    ({"init_image": "x.png"}, "`init_image` must be a PIL image"),
    ({"free_init": 6}, "`free_init` must be between 0 and 5"),
    ({"free_init": 3, "free_init_filter": "sinc"}, "`free_init_filter` must be one of butterworth, gaussian"),
    ({"free_init": 3, "init_image": Image.new("RGB", (64, 64))}, "`free_init` samples the clip again"),
])
def test_bad_requests_are_one_line(change, message):
    with pytest.raises(InvalidArgument) as e:
        VideoRequest(PROMPT, motion="tiny-mm", **change).validate()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_no_motion_adapter_named(tiny_model):
    """gouache-tiny's own (gouache-tiny-motion, shipped) when the request names none; a model without
    a default motion adapter asks for one, listing what is installed."""
    import dataclasses

    video = txt2vid(tiny_model, VideoRequest(PROMPT, frames=2, steps=1))[0]
    assert "Motion module: gouache-tiny-motion" in video.infotext
    facts = tiny_model.facts
    tiny_model.facts = dataclasses.replace(facts, motion_adapter=None)
    try:
        with pytest.raises(InvalidArgument, match="name a motion adapter.*gouache-tiny-motion"):
            txt2vid(tiny_model, VideoRequest(PROMPT, frames=2, steps=1))
    finally:
        tiny_model.facts = facts


def test_the_built_in_motion_adapter_moves_the_shape_the_named_way(tiny_model):
    """`gouache video` at gouache-tiny's defaults with its shipped adapter (and its text readout), on
    the bar's first four prompts (the four directions, clip k from seed k as in
    scripts/quality/motion_bars.py): every frame shows the prompt's shape, colour and background, and
    the shape goes the way the prompt says by a quarter of the frame in at least three of the four
    (100 % of 48 such clips, 97.9 % of 48 held-out ones: docs/motion-training.md)."""
    from gouache.tiny.motion import evaluation_prompts
    from gouache.tiny.motion_eval import judge_clip

    judged = [judge_clip(txt2vid(tiny_model, VideoRequest(prompt, frames=16, seed=k))[0].frames, prompt)
              for k, prompt in enumerate(evaluation_prompts(False, 4))]
    assert all(j.frames_right == 16 and j.consistent for j in judged)
    assert sum(j.moving for j in judged) >= 3, [j.motion for j in judged]


def test_an_image_is_no_video_infotext():
    with pytest.raises(InvalidArgument, match="not a video's"):
        video_request_from_infotext("a cat\nSteps: 4, Sampler: Euler, Seed: 1, Size: 64x64")


def test_frames_are_pil_images(tiny_model):
    assert all(isinstance(f, Image.Image) for f in vid(tiny_model, frames=2).frames)


def test_python_api_returns_the_frames_and_writes_the_file(tiny_model, tmp_path):
    import gouache

    video = gouache.txt2vid(PROMPT, model=tiny_model, motion="tiny-mm:0.5", frames=3, steps=2, seed=1,
                            output=tmp_path / "clip.webp")
    assert len(video.frames) == 3 and video.path == tmp_path / "clip.webp"
    assert (tmp_path / "clip.txt").read_text() == video.infotext and "Motion scale: 0.5" in video.infotext
    with pytest.raises(gouache.GouacheError, match="exists"):
        gouache.txt2vid(PROMPT, model=tiny_model, motion="tiny-mm", frames=2, steps=1, output=tmp_path / "clip.webp")


def test_an_adapters_cross_attention_lora_goes_with_it(tiny_model, gouache_home):
    """A MotionAdapter folder with cross-attention-lora.safetensors (gouache train motion --text-lora):
    the LoRA is on while the adapter runs, at its scale, and off afterwards; it is not one of the
    prompt's "Lora hashes", and the adapter's hash stays its weights'."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from gouache.adapters.motion import CROSS_ATTENTION_LORA
    from gouache.train.motion import cross_attention_targets

    folder = gouache_home / "motion" / "tiny-mm-text"
    shutil.copytree(gouache_home / "motion" / "tiny-mm", folder)
    torch.manual_seed(3)
    lora = {}
    for name in cross_attention_targets(tiny_model.unet):
        layer = tiny_model.unet.get_submodule(name)
        key = "lora_unet_" + name.replace(".", "_")
        lora[f"{key}.lora_down.weight"] = torch.randn(2, layer.in_features) * 0.5
        lora[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, 2) * 0.5
        lora[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(lora, folder / CROSS_ATTENTION_LORA)

    plain, with_lora = vid(tiny_model, motion="tiny-mm"), vid(tiny_model, motion="tiny-mm-text")
    assert not np.array_equal(arrays(plain.frames), arrays(with_lora.frames))
    assert "Lora hashes" not in with_lora.infotext and "Motion module: tiny-mm-text," in with_lora.infotext
    assert plain.params["Motion module hash"] == with_lora.params["Motion module hash"]
    assert len(with_lora.params["Motion module LoRA hash"]) == 12 and "Motion module LoRA hash" not in plain.params
    still = vid(tiny_model, motion="tiny-mm-text", motion_scale=0.0, frames=2)  # no motion: no LoRA, the image model
    images = txt2img(tiny_model, GenerationRequest(PROMPT, steps=4, seed=5, batch_size=2))
    assert all(np.array_equal(np.asarray(f), np.asarray(i.image)) for f, i in zip(still.frames, images))
    assert np.array_equal(arrays(vid(tiny_model, motion="tiny-mm").frames), arrays(plain.frames))  # off again
