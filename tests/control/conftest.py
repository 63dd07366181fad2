"""Tiny random-weight ControlNets made from the test models' UNets (their zero convolutions given
random weights, so that they change the image)."""

import pytest
import torch


def without_lora(unet):
    """``unet`` itself, or, when other tests left peft's LoRA layers in the session's model, a copy with
    its base weights alone (``from_unet`` copies state dicts by the plain module names)."""
    from diffusers import UNet2DConditionModel

    state = unet.state_dict()
    plain = {k.replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k}
    if len(plain) == len(state):
        return unet
    fresh = UNet2DConditionModel.from_config(unet.config)
    fresh.load_state_dict(plain)
    return fresh


def random_controlnet(unet, seed: int, name: str):
    from diffusers import ControlNetModel

    from gouache.control.models import LoadedControlNet

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(without_lora(unet), conditioning_embedding_out_channels=(8, 16, 32, 64))
    for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(conv.weight, std=0.05)
    return LoadedControlNet(net.eval().requires_grad_(False), name, f"{seed:08x}")


@pytest.fixture(scope="session")
def tiny_controlnet(tiny_model):
    return random_controlnet(tiny_model.unet, 1, "rand-a")


@pytest.fixture(scope="session")
def other_controlnet(tiny_model):
    return random_controlnet(tiny_model.unet, 2, "rand-b")


@pytest.fixture(scope="session")
def sdxl_controlnet(tiny_sdxl):
    """An SDXL ControlNet: it reads the pooled text and size ids (``added_cond_kwargs``) too."""
    return random_controlnet(tiny_sdxl.unet, 3, "rand-xl")


@pytest.fixture
def square():
    """A white square on black: its Canny edges are the square's outline."""
    from PIL import Image

    im = Image.new("RGB", (64, 64))
    im.paste((255, 255, 255), (16, 20, 44, 48))
    return im
