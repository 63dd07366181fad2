"""The CUDA path on a real GPU (skipped without one; the GPU session runs this file, docs/gpu.md)."""

import numpy as np
import pytest
import torch

from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.speed import SpeedSettings
from gouache.tiny.judge import read_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
PROMPT = "a red circle on a blue background"


def pixels(results) -> list[np.ndarray]:
    return [np.asarray(r.image, dtype=int) for r in results]


def test_cuda_path_keeps_the_cpu_images_judgement():
    """fp16 batched on the GPU against fp32 per image on the CPU, same seeds: the same shapes."""
    req = GenerationRequest(PROMPT, steps=12, seed=5, batch_size=4)
    gpu = txt2img(load_model(None, device="cuda", dtype="fp16"), req)
    cpu = txt2img(load_model(None, dtype="fp32"), req)
    assert [read_image(r.image).as_tuple() for r in gpu] == [read_image(r.image).as_tuple() for r in cpu]
    assert all(np.abs(a - b).mean() < 4 for a, b in zip(pixels(gpu), pixels(cpu)))
    assert "Batch size: 4, Batch pos: 2" in gpu[2].infotext


def test_same_seed_and_batch_give_the_same_image_on_the_gpu():
    model = load_model(None, device="cuda", dtype="fp16")
    req = GenerationRequest(PROMPT, steps=8, seed=9, batch_size=3)
    a, b = pixels(txt2img(model, req)), pixels(txt2img(model, req))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_cuda_graphs_replay_the_steps():
    eager = load_model(None, device="cuda", dtype="fp16")
    graphed = load_model(None, device="cuda", dtype="fp16", speed=SpeedSettings(cuda_graphs=True))
    req = GenerationRequest(PROMPT, steps=8, seed=3, batch_size=2)
    for a, b in zip(pixels(txt2img(eager, req)), pixels(txt2img(graphed, req))):
        assert np.abs(a - b).max() <= 2


def test_compile_reduce_overhead_runs():
    model = load_model(None, device="cuda", dtype="fp16",
                       speed=SpeedSettings(compile=True, compile_mode="reduce-overhead"))
    txt2img(model, GenerationRequest(PROMPT, steps=4, seed=1))
    assert model.speed["compile"]["compile_s"]  # the first call's time per shape, recorded
