"""The prompt read out for the motion modules: the file round-trips, a bad one is one error, and an
adapter folder with one runs it — and runs exactly AnimateDiff's modules while it says nothing."""

import importlib.util
from pathlib import Path

import pytest
import torch

from gouache.adapters.motion import MOTION_TEXT, FrameCount, load_motion
from gouache.adapters.motion_text import TextReadout, sideways
from gouache.errors import ModelLoadError

_spec = importlib.util.spec_from_file_location("motion_layouts", Path(__file__).parents[1] / "motion_layouts.py")
_layouts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_layouts)
tiny_adapter = _layouts.tiny_adapter

DIMS = [64, 128, 128, 128, 128, 128, 64, 64, 64, 128]  # any widths: the file records them


def _dims(adapter):
    from gouache.adapters.motion import motion_modules

    return [m.proj_in.in_features for m in motion_modules(adapter)]


def test_sideways_moves_four_channel_groups_by_one_position_and_keeps_the_rest():
    h = torch.zeros(1, 16, 5, 5)
    h[:, :, 2, 2] = 1.0
    out = sideways(h)
    where = lambda c: tuple(int(i) for i in (out[0, c] == 1).nonzero()[0])  # noqa: E731
    assert [where(c) for c in (0, 2, 4, 6)] == [(2, 3), (2, 1), (3, 2), (1, 2)]  # right, left, down, up
    assert torch.equal(out[:, 8:], h[:, 8:]) and out.sum() == h.sum()
    assert torch.equal(h[0, 0, 2, 2], torch.tensor(1.0))  # the input is left as it was


def test_a_readout_file_round_trips_and_a_bad_one_is_one_error(tmp_path):
    torch.manual_seed(0)
    readout = TextReadout(64, DIMS)
    for p in readout.out.parameters():
        p.data.normal_(0, 0.1)
    path = tmp_path / MOTION_TEXT
    path.write_bytes(readout.save_bytes(torch.float32))
    back = TextReadout.load(path)
    text = torch.randn(3, 77, 64)
    assert back.sideways and back.dims == DIMS
    assert torch.equal(back(text), readout(text).detach())
    h = torch.randn(3, 128, 4, 4)
    assert torch.equal(back.steer(h, 2, back(text)), readout.steer(h, 2, readout(text)).detach())

    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelLoadError) as e:
        TextReadout.load(tmp_path / "bad.safetensors")
    assert "\n" not in str(e.value) and "text readout" in str(e.value)


def test_the_words_reach_the_modules_one_vector_per_row():
    torch.manual_seed(0)
    readout = TextReadout(64, DIMS, sideways=False)
    for p in readout.out.parameters():
        p.data.normal_(0, 0.1)
    left, right = torch.randn(1, 77, 64), torch.randn(1, 77, 64)
    right[:, :10] = left[:, :10]
    h = torch.randn(2, 64, 4, 4)
    steered = readout.steer(h, 0, readout(torch.cat([left, right])))
    shift = (steered - h).mean(dim=(2, 3))
    assert torch.allclose(steered - h, shift[:, :, None, None].expand_as(h), atol=1e-6)  # the same everywhere
    assert not torch.allclose(shift[0], shift[1])  # and it differs with the words


@pytest.fixture(scope="module")
def unet():
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings

    return load_model(speed=SpeedSettings.reference()).unet


def _write(folder: Path, readout: TextReadout | None):
    adapter = tiny_adapter()
    adapter.save_pretrained(folder)
    if readout is not None:
        (folder / MOTION_TEXT).write_bytes(readout.save_bytes(torch.float32))
    return folder


def test_an_adapter_folder_with_a_readout_runs_it_and_a_silent_one_is_animatediffs(unet, tmp_path):
    frames = 4
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2 * frames, 4, 8, 8, generator=g)
    text = torch.randn(2, 77, 64, generator=g).repeat_interleave(frames, 0)
    t = torch.tensor(400)
    plain = load_motion(str(_write(tmp_path / "plain", None)))
    assert plain.readout is None and plain.readout_hash is None
    silent = load_motion(str(_write(tmp_path / "silent", TextReadout(64, _dims(tiny_adapter()), sideways=False))))
    torch.manual_seed(1)
    speaking = TextReadout(64, _dims(tiny_adapter()))
    for p in speaking.out.parameters():
        p.data.normal_(0, 0.2)
    loud = load_motion(str(_write(tmp_path / "loud", speaking)))
    assert len(loud.readout_hash) == 12 and loud.hash == plain.hash  # the adapter's own weights' hash is unchanged
    outs = []
    with torch.no_grad():
        for motion in (plain, silent, loud):
            with motion.installed(unet, FrameCount(frames)):
                outs.append(unet(x, t, encoder_hidden_states=text).sample)
        after = unet(x, t, encoder_hidden_states=text).sample
    from gouache.pipelines.video import VideoRequest, video_params

    request = VideoRequest("a red circle on a blue background, moving left", frames=4)
    assert video_params(request, loud)["Motion module text hash"] == loud.readout_hash  # the infotext says which
    assert "Motion module text hash" not in video_params(request, plain)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)  # zero outputs, no shift: exactly AnimateDiff's modules
    assert not torch.allclose(outs[0], outs[2], atol=1e-3)
    assert not torch.equal(after, outs[2])


def test_a_readout_for_another_adapter_is_one_error(tmp_path):
    folder = _write(tmp_path / "mm", TextReadout(64, [32] * 10))
    with pytest.raises(ModelLoadError) as e:
        load_motion(str(folder))
    assert "\n" not in str(e.value) and "does not fit" in str(e.value)
