"""A small SD-shaped UNet (SD's block classes, gouache's attention processor, channels-last) for the
speed tests that patch its layers."""

import pytest
import torch


@pytest.fixture
def small_unet():
    """``small_unet(dtype, first=...)``: a fresh seeded UNet whose first down block is ``first``
    (SD 1.x/2.x: ``CrossAttnDownBlock2D``; SDXL: ``DownBlock2D``)."""
    from diffusers import UNet2DConditionModel

    from gouache.speed.attention import GouacheAttnProcessor

    def make(dtype=torch.float32, first="CrossAttnDownBlock2D"):
        torch.manual_seed(0)
        second = "DownBlock2D" if first == "CrossAttnDownBlock2D" else "CrossAttnDownBlock2D"
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=(first, second), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=24, attention_head_dim=8, norm_num_groups=8)
        unet = unet.to(dtype).eval().to(memory_format=torch.channels_last)
        unet.set_attn_processor(GouacheAttnProcessor())
        return unet

    return make
