"""The CUDA path's CPU-testable parts: the batched path against the per-image one, the infotext's
batch keys and ``--from`` remaking a batched image, and the CUDA-only options' one-line errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from gouache.cli import main
from gouache.errors import InvalidArgument
from gouache.pipelines.fields import read_request
from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img
from gouache.speed import SpeedSettings
from gouache.tiny.judge import read_image

PROMPT = "a red circle on a blue background"
# batched against per image, fp32 on CPU: the same sums in another order (a batch's matmuls block
# differently), so a rare pixel one level of 255 off (measured: 1-3 pixels of 8 x 12,288 values at
# 6-20 steps); the bound leaves room for other CPUs' kernels
MEAN_LEVELS, MAX_LEVELS = 0.05, 4


@pytest.fixture(scope="module")
def models():
    per_image = load_model(None, dtype="fp32")
    together = load_model(None, speed=SpeedSettings(dtype="fp32", batching="batched"))
    return per_image, together


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=int)


def test_cpu_defaults_to_per_image(models):
    per_image, together = models
    assert per_image.speed["batched"] is False and together.speed["batched"] is True


def test_batched_is_close_to_per_image(models):
    per_image, together = models
    req = GenerationRequest(PROMPT, steps=6, seed=11, batch_size=4)
    a, b = txt2img(per_image, req), txt2img(together, req)
    diffs = [np.abs(pixels(x) - pixels(y)) for x, y in zip(a, b)]
    assert all(d.mean() <= MEAN_LEVELS and d.max() <= MAX_LEVELS for d in diffs), [(d.mean(), d.max()) for d in diffs]
    assert [read_image(x.image).as_tuple() for x in a] == [read_image(y.image).as_tuple() for y in b]
    # the per-image path is the CPU's rule: image i of the batch is image i made alone
    alone = txt2img(per_image, GenerationRequest(PROMPT, steps=6, seed=13))
    assert np.array_equal(pixels(alone[0]), pixels(a[2]))


@pytest.mark.parametrize("path", ["per-image", "batched"])
def test_the_texts_keys_and_values_are_computed_once_per_generation(models, path):
    """Through the engine: the same text reaches the UNet as the same tensor at every step and for
    every image, so the cross-attention cache knows it without comparing values."""
    model = models[path == "batched"]
    calls = []
    hooks = [mod.register_forward_hook(lambda *a: calls.append(1))
             for name, mod in model.unet.named_modules() if name.endswith("attn2.to_k")]
    try:
        txt2img(model, GenerationRequest(PROMPT, steps=4, seed=1, batch_size=2, cfg_truncation=1.0))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(calls) == len(hooks) > 0


def test_batched_images_record_their_batch_and_remake_from_it(models):
    per_image, together = models
    results = txt2img(together, GenerationRequest(PROMPT, steps=4, seed=20, batch_size=3))
    infos = [r.infotext for r in results]
    assert [("Batch size: 3" in i, f"Batch pos: {k}" in i) for k, i in enumerate(infos)] == [(True, True)] * 3
    assert "Seed: 21," in infos[1]
    # --from: the batch again from its first seed, keeping image 1, the same on the same machine
    req = read_request(infos[1])
    assert (req.batch_size, req.batch_pos, req.seed) == (3, 1, 20)
    again = txt2img(together, req)
    assert len(again) == 1 and np.array_equal(pixels(again[0]), pixels(results[1]))
    assert again[0].infotext == infos[1]
    # on the per-image path only that image runs, and it is close to the batched one
    solo = txt2img(per_image, req)
    assert len(solo) == 1 and np.abs(pixels(solo[0]) - pixels(results[1])).max() <= MAX_LEVELS
    # per-image images are remade alone: no batch keys
    assert "Batch" not in txt2img(per_image, GenerationRequest(PROMPT, steps=2, seed=1, batch_size=2))[1].infotext


def test_from_remakes_a_batched_image_on_the_command_line(tmp_path, models):
    _, together = models
    result = txt2img(together, GenerationRequest(PROMPT, steps=3, seed=30, batch_size=2))[1]
    src = tmp_path / "src.png"
    from gouache.metadata.png import save_png

    save_png(result.image, src, result.infotext)
    assert main(["generate", "--from", str(src), "--out", str(tmp_path / "out")]) == 0
    made = sorted((tmp_path / "out").glob("*.png"))
    assert len(made) == 1  # one image of the two-image batch, on the per-image path
    info = Image.open(made[0]).info["parameters"]
    assert "Seed: 31," in info and "Batch" not in info
    assert np.abs(np.asarray(Image.open(made[0]), dtype=int) - pixels(result)).max() <= MAX_LEVELS


@pytest.mark.parametrize("infotext,message", [
    ("p\nSteps: 2, Sampler: Euler, Seed: 5, Batch size: 2, Batch pos: 2", "Batch pos"),
    ("p\nSteps: 2, Sampler: Euler, Seed: 5, Batch size: two, Batch pos: 1", "Batch size"),
])
def test_bad_batch_keys_are_one_line(infotext, message):
    with pytest.raises(InvalidArgument, match=message):
        read_request(infotext)


def test_batch_pos_is_checked():
    with pytest.raises(InvalidArgument, match="batch_pos"):
        GenerationRequest(PROMPT, batch_size=2, batch_pos=2).validate()
    with pytest.raises(InvalidArgument, match="n_iter"):
        GenerationRequest(PROMPT, batch_size=2, batch_pos=1, n_iter=2).validate()


needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


@needs_no_cuda
@pytest.mark.parametrize("flags,message", [
    (["--device", "cuda"], "needs a CUDA GPU"),
    (["--offload", "sequential"], "needs a CUDA device"),
    (["--compile", "--compile-mode", "reduce-overhead"], "captures CUDA graphs"),
    (["--cuda-graphs"], "needs a CUDA device"),
    (["--device", "tpu"], "`device` must be"),
])
def test_cuda_only_options_are_one_line_without_cuda(tmp_path, capsys, flags, message):
    code = main(["generate", PROMPT, "--steps", "2", "--out", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.png"))


@needs_no_cuda
def test_cuda_graphs_need_cuda_in_python_too():
    with pytest.raises(InvalidArgument, match="CUDA graphs"):
        load_model(None, speed=SpeedSettings(compile=True, compile_mode="max-autotune"))


def test_per_image_flag_and_bad_settings(tmp_path):
    assert main(["generate", PROMPT, "--steps", "2", "--seed", "4", "--batch-size", "2", "--per-image",
                 "--out", str(tmp_path)]) == 0
    assert "Batch" not in Image.open(tmp_path / "00001-5.png").info["parameters"]
    with pytest.raises(InvalidArgument, match="batching"):
        SpeedSettings(batching="sometimes").validate()
    with pytest.raises(InvalidArgument, match="compile_mode"):
        SpeedSettings(compile_mode="fastest").validate()


@needs_no_cuda
@pytest.mark.parametrize("flags,message", [
    (["--device", "cuda"], "needs a CUDA GPU"),
    (["--compile", "--compile-mode", "reduce-overhead"], "captures CUDA graphs"),
])
def test_serve_refuses_cuda_options_without_cuda_in_one_line(capsys, flags, message):
    assert main(["serve", "--port", "1", *flags]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_serve_loads_with_its_compile_settings():
    from gouache.server.config import ServerConfig

    speed = ServerConfig(compile=True).speed()
    assert speed.compile and speed.compile_mode == "default"
    with pytest.raises(InvalidArgument, match="compile_mode"):
        ServerConfig(compile=True, compile_mode="fastest").validate()


def test_graphed_call_falls_back_to_eager_where_capture_fails(models):
    """Without CUDA every capture fails: each signature is logged once and runs eagerly, the same."""
    from gouache.prompts.conditioning import Conditioning
    from gouache.sampling.guidance import unet_call
    from gouache.speed.cuda import graphed_call

    per_image, _ = models
    logged = []
    call, plain = graphed_call(per_image.unet, logged.append), unet_call(per_image.unet)
    torch.manual_seed(0)
    x, c = torch.randn(2, 4, 8, 8), Conditioning(torch.randn(2, 77, per_image.unet.config.cross_attention_dim))
    with torch.no_grad():
        for t in (torch.tensor(999.0), torch.tensor(500.0)):
            assert torch.equal(call(x, t, c), plain(x, t, c))
    assert len(logged) == 1 and "eagerly" in logged[0] and call.graphed.replays == 0
