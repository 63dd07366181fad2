"""Thread count per generation: one thread for a small model's latents, the rest left as they are."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.speed.threads import ENV, generation_threads


def _unet_threads(model, req):
    seen = []
    hook = model.unet.register_forward_pre_hook(lambda *a: seen.append(torch.get_num_threads()))
    try:
        txt2img(model, req)
    finally:
        hook.remove()
    return set(seen)


def test_a_64_pixel_generation_runs_on_one_thread_and_restores_the_count(tiny_model, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _unet_threads(tiny_model, GenerationRequest("a red circle on a blue background", steps=2, seed=1)) == {1}
        assert torch.get_num_threads() == 2
        monkeypatch.setenv(ENV, "2")
        assert _unet_threads(tiny_model, GenerationRequest("a red circle on a blue background", steps=2, seed=1)) == {2}
    finally:
        torch.set_num_threads(before)


def test_large_latents_keep_torchs_count_and_a_bad_setting_is_named(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert generation_threads(8 * 8) == 1 and generation_threads(64 * 64) is None
    monkeypatch.setenv(ENV, "many")
    with pytest.raises(InvalidArgument, match="GOUACHE_THREADS must be a number of threads"):
        generation_threads(64)
