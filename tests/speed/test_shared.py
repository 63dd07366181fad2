"""CFG's shared layers run once: the UNet's prediction is the plain call's, the layers before the
first cross-attention see one image when every image of the batch is the same, and only then."""

import pytest
import torch

from gouache.speed.attention import GouacheAttnProcessor
from gouache.speed.shared import shared_cfg_prefix


def _cfg_inputs(dtype=torch.float32):
    """A CFG batch: the same latent twice, two different texts."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 16, 16, generator=g).to(dtype)
    return torch.cat([x, x]).to(memory_format=torch.channels_last), torch.tensor(500), \
        torch.randn(2, 77, 24, generator=g).to(dtype)


def _batch_sizes(unet):
    """Batch sizes seen by the first ResNet's convolution and the first self-attention's query."""
    seen = {"resnet": [], "attn1": []}
    block = unet.down_blocks[0]
    block.resnets[0].conv1.register_forward_hook(lambda m, a, o: seen["resnet"].append(a[0].shape[0]))
    attn1 = block.attentions[0].transformer_blocks[0].attn1
    attn1.to_q.register_forward_hook(lambda m, a, o: seen["attn1"].append(a[0].shape[0]))
    return seen


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2**-6)])
def test_cfg_halves_share_the_first_layers_and_the_prediction_is_the_same(small_unet, dtype, tol):
    unet = small_unet(dtype)
    x, t, text = _cfg_inputs(dtype)
    seen = _batch_sizes(unet)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=text).sample
        assert seen == {"resnet": [2], "attn1": [2]}
        with shared_cfg_prefix(unet) as n:
            assert n == 3  # the first ResNet, the transformer's input, its self-attention
            shared = unet(x, t, encoder_hidden_states=text).sample
        assert seen == {"resnet": [2, 1], "attn1": [2, 1]}  # one image, then copied
    assert shared.shape == plain.shape
    # the same computation per image; only the order of GroupNorm's sums may differ with the batch
    assert (shared.float() - plain.float()).abs().max().item() <= tol * plain.float().abs().max().item()
    assert not torch.equal(shared[0], shared[1])  # the halves still part at the cross-attention


def test_batches_whose_images_differ_are_computed_whole(small_unet):
    unet = small_unet()
    x, t, text = _cfg_inputs()
    seen = _batch_sizes(unet)
    other = x.clone()
    other[1, 0, 0, 0] += 1.0  # img2img batches, or two seeds: different latents
    with torch.no_grad(), shared_cfg_prefix(unet):
        got = unet(other, t, encoder_hidden_states=text).sample
        # the same latent at two timesteps: the time embedding differs (as SDXL's, which carries the text)
        unet(x, torch.tensor([500, 400]), encoder_hidden_states=text)
    assert seen == {"resnet": [2, 2], "attn1": [2, 2]}
    with torch.no_grad():
        assert torch.equal(got, unet(other, t, encoder_hidden_states=text).sample)


def test_scope_nesting_gradients_and_other_layouts(small_unet):
    unet = small_unet()
    x, t, text = _cfg_inputs()
    resnet = unet.down_blocks[0].resnets[0]
    with shared_cfg_prefix(unet) as outer:
        with shared_cfg_prefix(unet) as inner:
            assert (outer, inner) == (3, 0)  # an enclosing scope keeps its own
        assert "forward" in resnet.__dict__
        seen = _batch_sizes(unet)
        unet(x, t, encoder_hidden_states=text).sample.sum().backward()  # training: computed whole
        assert seen["resnet"] == [2]
    assert "forward" not in resnet.__dict__ and "_gouache_shared" not in resnet.__dict__  # restored

    with shared_cfg_prefix(small_unet(first="DownBlock2D")) as n:
        assert n == 0  # SDXL's layout: no attention in the first block, nothing shared there
    compiled = small_unet()
    compiled.compile()
    with shared_cfg_prefix(compiled, None) as n:
        assert n == 0


def test_an_unknown_attention_processor_is_not_shared(small_unet):
    class AcrossTheBatch(GouacheAttnProcessor):  # a processor that may mix the batch's images
        pass

    unet = small_unet()
    unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.set_processor(AcrossTheBatch())
    x, t, text = _cfg_inputs()
    seen = _batch_sizes(unet)
    with torch.no_grad(), shared_cfg_prefix(unet) as n:
        assert n == 2
        unet(x, t, encoder_hidden_states=text)
    assert seen == {"resnet": [1], "attn1": [2]}


def test_a_clip_s_cfg_batch_computes_its_frames_once(small_unet):
    """A clip's CFG batch is its frames, then the same frames again (for the prompt): the shared
    layers compute the first run and copy it; a batch whose frames then differ is computed whole."""
    from gouache.speed.shared import _period

    unet = small_unet()
    g = torch.Generator().manual_seed(2)
    frames = torch.randn(3, 4, 16, 16, generator=g)
    x = torch.cat([frames, frames]).to(memory_format=torch.channels_last)
    text = torch.randn(6, 77, 24, generator=g)
    t = torch.tensor(500)
    seen = _batch_sizes(unet)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=text).sample
        with shared_cfg_prefix(unet):
            shared = unet(x, t, encoder_hidden_states=text).sample
    assert seen == {"resnet": [6, 3], "attn1": [6, 3]}
    assert (shared - plain).abs().max().item() <= 1e-5 * plain.abs().max().item()
    assert _period(x) == 3 and _period(torch.cat([frames, frames, frames])) == 3
    assert _period(torch.cat([frames, frames.flip(0)])) == 6 and _period(x[:1].repeat(4, 1, 1, 1)) == 1
