"""Shared fixtures: every test runs offline against a throw-away $GOUACHE_HOME, in fp32.

gouache's default dtype depends on the CPU (bf16 with AVX512-BF16 or AMX, else fp32), so the suite
pins ``$GOUACHE_DTYPE=fp32`` to expect the same images on every machine; ``tests/speed`` runs the
bf16 path explicitly and checks it against fp32.
"""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def gouache_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("gouache-home")
    saved = {k: os.environ.get(k) for k in ("GOUACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "GOUACHE_DTYPE")}
    os.environ.update(GOUACHE_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GOUACHE_DTYPE="fp32")
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_model(gouache_home):
    """The built-in gouache-tiny, loaded once per test session."""
    from gouache.pipelines.model import load_model

    return load_model()


@pytest.fixture(scope="session")
def tiny_sdxl():
    """A random-weight SDXL pipeline built from configs: two CLIP encoders, pooled + size conditioning."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from gouache.models.clip_tokenizer import load_clip_tokenizer
    from gouache.pipelines.model import LoadedModel
    from gouache.models.tiny_architecture import SCHEDULER_CONFIG, TinyConfig, build_vae

    torch.manual_seed(0)

    def clip(cls, width, act, **kw):
        return cls(CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=width * 2, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=77, hidden_act=act, **kw)).eval()

    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32 + 64, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
    ).eval()
    pipe = StableDiffusionXLPipeline(
        vae=build_vae(TinyConfig()).eval(),
        text_encoder=clip(CLIPTextModel, 32, "quick_gelu"),
        text_encoder_2=clip(CLIPTextModelWithProjection, 64, "gelu", projection_dim=32),
        tokenizer=load_clip_tokenizer(),
        tokenizer_2=load_clip_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config({k: v for k, v in SCHEDULER_CONFIG.items() if not k.startswith("_")}),
    )
    return LoadedModel(pipe, "tiny-sdxl", "tiny-sdxl", "0000000000")


@pytest.fixture
def run(capsys):
    """``run(*argv) -> (exit code, stdout, stderr)`` of ``gouache *argv``."""

    from gouache.cli import main

    def call(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def helper_module(name: str):
    """``tests/NAME.py`` imported by its path (the tests' folder is no package under importlib mode)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def motion_layouts():
    """``tests/motion_layouts.py``: motion adapters in diffusers' and the original layouts, tiny random weights."""
    return helper_module("motion_layouts")


@pytest.fixture(scope="session")
def ip_layouts():
    """``tests/ip_layouts.py``: IP-Adapter files in h94's exact key layouts, tiny random weights."""
    return helper_module("ip_layouts")


@pytest.fixture(scope="session")
def tiny_ip_adapter(gouache_home, tiny_model, ip_layouts):
    """``tiny-ip``: a random plain IP-Adapter for gouache-tiny in the session's $GOUACHE_HOME/ip-adapter,
    reading gouache-tiny-clip's image embeddings (as the built-in adapter does)."""
    return ip_layouts.tiny_gouache_adapter(gouache_home / "ip-adapter", tiny_model.unet)


@pytest.fixture(scope="session")
def prompt_home():
    """``tests/prompt_home.py``: ``make_home(path)``, a $GOUACHE_HOME with wildcards and styles."""
    return helper_module("prompt_home")


@pytest.fixture(scope="session")
def llm_fixtures():
    """``tests/llm_fixtures.py``: tiny local LMs (one set by hand to answer a known prompt) and a
    canned OpenAI-compatible server."""
    return helper_module("llm_fixtures")


@pytest.fixture(scope="session")
def reply_lm(llm_fixtures, tmp_path_factory):
    """A tiny local LM folder that answers ``llm_fixtures.EXPECTED`` (written once a session)."""
    return llm_fixtures.write_reply_lm(tmp_path_factory.mktemp("llm") / "reply-lm")


@pytest.fixture
def canned(llm_fixtures):
    """A canned OpenAI-compatible chat server on loopback, closed after the test."""
    server = llm_fixtures.CannedServer()
    yield server
    server.close()
