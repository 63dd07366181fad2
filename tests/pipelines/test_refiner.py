"""SDXL base + refiner through the one loop: a random-weight base and a tiny OpenCLIP-only refiner."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img


@pytest.fixture(scope="module")
def tiny_refiner():
    """As the SDXL refiner: OpenCLIP only (no first text encoder), aesthetic score in 5 time ids."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from gouache.models.clip_tokenizer import load_clip_tokenizer
    from gouache.pipelines.model import LoadedModel
    from gouache.models.tiny_architecture import SCHEDULER_CONFIG, TinyConfig, build_vae

    torch.manual_seed(1)
    encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=32)).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 5 * 8,
    ).eval()
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=build_vae(TinyConfig()).eval(), text_encoder=None, tokenizer=None, text_encoder_2=encoder,
        tokenizer_2=load_clip_tokenizer(pad_token="!"), unet=unet, requires_aesthetics_score=True,
        scheduler=EulerDiscreteScheduler.from_config({k: v for k, v in SCHEDULER_CONFIG.items() if not k.startswith("_")}),
    )
    return LoadedModel(pipe, "tiny-refiner", "tiny-refiner", "1111111111")


def _spy(monkeypatch, unet):
    calls = []
    forward = unet.forward

    def counting(*args, **kw):
        calls.append(kw["added_cond_kwargs"]["time_ids"].clone())
        return forward(*args, **kw)

    monkeypatch.setattr(unet, "forward", counting)
    return calls


@pytest.mark.parametrize("steps,switch,base_steps", [(5, 0.8, 4), (10, 0.8, 8), (4, 0.5, 2)])
def test_base_then_refiner_run_their_share_of_the_steps(tiny_sdxl, tiny_refiner, monkeypatch, steps, switch, base_steps):
    base_calls, refiner_calls = _spy(monkeypatch, tiny_sdxl.unet), _spy(monkeypatch, tiny_refiner.unet)
    req = GenerationRequest("a red circle", steps=steps, seed=3, width=64, height=64, sampler="Euler",
                            refiner_switch_at=switch)
    out = txt2img(tiny_sdxl, req, refiner=tiny_refiner)
    assert out[0].image.size == (64, 64)
    # one guided call (uncond + cond batched) per step
    assert len(base_calls) == base_steps and len(refiner_calls) == steps - base_steps
    # the refiner reads original size, crop and the aesthetic score: 6 for the prompt, 2.5 for the negative
    assert refiner_calls[0].tolist() == [[64, 64, 0, 0, 2.5], [64, 64, 0, 0, 6.0]]
    assert f"Refiner: tiny-refiner, Refiner switch at: {switch}" in out[0].infotext


def test_refiner_changes_the_image_and_is_repeatable(tiny_sdxl, tiny_refiner):
    req = GenerationRequest("a red circle", steps=5, seed=3, width=64, height=64, sampler="DPM++ 2M")
    plain = txt2img(tiny_sdxl, req)[0].image
    refined = txt2img(tiny_sdxl, req, refiner=tiny_refiner)[0].image
    again = txt2img(tiny_sdxl, req, refiner=tiny_refiner)[0].image
    assert list(refined.getdata()) == list(again.getdata())
    assert list(refined.getdata()) != list(plain.getdata())


@pytest.mark.parametrize("switch", [0, 1, 1.5, "0.8"])
def test_bad_switch_is_named(tiny_sdxl, tiny_refiner, switch):
    with pytest.raises(InvalidArgument, match="`refiner_switch_at`"):
        txt2img(tiny_sdxl, GenerationRequest("x", steps=2, refiner_switch_at=switch), refiner=tiny_refiner)


def test_a_non_sdxl_refiner_is_refused(tiny_sdxl, tiny_model):
    with pytest.raises(InvalidArgument, match="`refiner` must be a loaded SDXL model"):
        txt2img(tiny_sdxl, GenerationRequest("x", steps=2), refiner=tiny_model)


def test_infotext_names_the_refiner_and_reads_back(tiny_sdxl, tiny_refiner):
    from gouache.pipelines.request import request_from_infotext

    out = txt2img(tiny_sdxl, GenerationRequest("x", steps=2, seed=1, refiner_switch_at=0.5), refiner=tiny_refiner)[0]
    again = request_from_infotext(out.infotext)
    assert (again.refiner_checkpoint, again.refiner_switch_at) == ("tiny-refiner", 0.5)
    with pytest.raises(InvalidArgument, match="names refiner 'tiny-refiner'.*pass `refiner=`"):
        txt2img(tiny_sdxl, again)  # never silently without the refiner the infotext records
