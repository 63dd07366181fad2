"""IP-Adapter files in h94's layouts (SD 1.5 plain and plus, SDXL), written by the tests with tiny
random weights, load offline and make the UNet predict what diffusers' own loader makes it predict."""

import copy

import pytest
import torch
from PIL import Image

from gouache.adapters.ip_adapter import describe, find_ip_adapter, list_ip_adapters, load_ip_adapter, read_ip_adapter_file
from gouache.adapters.ip_attention import installed
from gouache.errors import InvalidArgument, ModelLoadError, UnknownName

PICTURE = Image.new("RGB", (40, 40), (220, 30, 30))


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A private $GOUACHE_HOME whose ip-adapter folder the test fills."""
    monkeypatch.setenv("GOUACHE_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "ip-adapter"


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    unet = model.unet
    x = torch.randn(1, 4, 8, 8, generator=g)
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    extra = {}
    if model.is_sdxl:
        extra = {"text_embeds": torch.randn(1, 32, generator=g), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]])}
    return x, torch.tensor([500]), text, extra


@pytest.mark.parametrize("base,kind,suffix", [
    ("tiny_sd15", "basic", ".safetensors"), ("tiny_sd15", "basic", ".bin"), ("tiny_sd15", "plus", ".safetensors"),
    ("tiny_sdxl", "basic", ".safetensors"), ("tiny_sdxl", "plus", ".bin"),
])
def test_h94_layouts_load_offline_and_predict_as_diffusers_own_loader(request, ip_layouts, folder, base, kind, suffix):
    model = request.getfixturevalue(base)
    unet = model.unet
    state = ip_layouts.h94_state(unet, kind, 24 if kind == "basic" else 32)
    path = ip_layouts.write(folder / f"ip-adapter_{kind}{suffix}", state)
    ip_layouts.vision_encoder(folder / "image_encoder", projection_dim=24, hidden=32)
    adapter = load_ip_adapter(f"ip-adapter_{kind}", unet, model.name)
    layers = len(ip_layouts.cross_layers(unet))
    assert len(adapter.to_k) == layers == (16 if base == "tiny_sd15" else 4)
    assert torch.equal(adapter.to_v[layers - 1].weight, state[f"ip_adapter.{2 * layers - 1}.to_v_ip.weight"])
    assert adapter.tokens == (4 if kind == "basic" else ip_layouts.QUERIES)

    embeds, negative = adapter.encode([PICTURE])
    if kind == "basic":
        assert embeds.shape == (1, 1, 24) and not negative.any()  # h94's negative: zero embeddings
    else:  # the penultimate hidden states; the negative is an all-zero image's
        assert embeds.shape == (1, 1, 17, 32) and negative.abs().sum() > 0
    reference = copy.deepcopy(unet)
    reference._load_ip_adapter_weights([read_ip_adapter_file(path)], low_cpu_mem_usage=False)
    x, t, text, extra = _inputs(model)
    kwargs = {**extra, "image_embeds": [embeds]}
    with torch.no_grad():
        plain = unet(x, t, text, added_cond_kwargs=extra or None).sample
        with installed(unet, [adapter], [1.0]):
            ours = unet(x, t, text, added_cond_kwargs=kwargs).sample
        expected = reference(x, t, text, added_cond_kwargs=kwargs).sample
        after = unet(x, t, text, added_cond_kwargs=extra or None).sample
    assert torch.allclose(ours, expected, atol=1e-5)
    assert not torch.allclose(ours, plain, atol=1e-3)  # the image prompt does something
    assert torch.equal(after, plain)  # and leaving gives the UNet back exactly


def test_the_built_in_clips_vision_tower_is_an_image_encoder(tiny_model, ip_layouts, folder):
    ip_layouts.tiny_gouache_adapter(folder, tiny_model.unet)
    adapter = load_ip_adapter("tiny-ip", tiny_model.unet, tiny_model.name)
    assert adapter.encoder.config.projection_dim == 64 and adapter.processor.crop_size["height"] == 64
    embeds, _ = adapter.encode([PICTURE])
    assert embeds.shape == (1, 1, 64)


def test_names_follow_h94s_folders_and_unknown_names_list_what_exists(tiny_sd15, ip_layouts, folder):
    unet = tiny_sd15.unet
    for name in ("ip-adapter_sd15", "ip-adapter-plus_sd15"):
        kind = "plus" if "plus" in name else "basic"
        ip_layouts.write(folder / "h94" / "models" / f"{name}.safetensors", ip_layouts.h94_state(unet, kind, 24))
    ip_layouts.vision_encoder(folder / "h94" / "models" / "image_encoder", projection_dim=24, hidden=24)
    ip_layouts.write(folder / "mine" / "weights.safetensors", ip_layouts.h94_state(unet, "basic", 24))
    assert [e.name for e in list_ip_adapters() if "tiny" not in e.name] == [
        "h94/models/ip-adapter-plus_sd15", "h94/models/ip-adapter_sd15", "mine/weights"]
    assert find_ip_adapter("ip-adapter_sd15 [6a3f6166]").name == "h94/models/ip-adapter_sd15"  # A1111's title
    assert find_ip_adapter("mine").name == "mine/weights"  # a folder holding one adapter
    assert load_ip_adapter("ip-adapter-plus_sd15", unet).kind == "hidden"
    with pytest.raises(UnknownName, match=r"unknown IP-Adapter 'ip-adapter_sd1' \(did you mean .*available: h94/"):
        find_ip_adapter("ip-adapter_sd1")


def test_an_adapter_for_another_base_names_both(tiny_sd15, tiny_sdxl, ip_layouts, folder):
    ip_layouts.write(folder / "xl.safetensors", ip_layouts.h94_state(tiny_sdxl.unet, "basic", 24))
    ip_layouts.vision_encoder(folder / "image_encoder", projection_dim=24)
    with pytest.raises(InvalidArgument) as err:
        load_ip_adapter("xl", tiny_sd15.unet, "tiny-sd15")
    assert str(err.value) == ("IP-Adapter 'xl' is for another kind of model than tiny-sd15: it adapts 4 cross-attention "
                              "layers of text width 96, the model has 16 cross-attention layers of text width 32; use "
                              "an IP-Adapter made for this base")
    assert describe(70, 2048).endswith("(SDXL)") and describe(16, 768).endswith("(SD 1.5)")


def test_an_adapter_without_its_encoder_or_with_the_wrong_one_says_what_to_do(tiny_sd15, ip_layouts, folder):
    ip_layouts.write(folder / "lonely.safetensors", ip_layouts.h94_state(tiny_sd15.unet, "basic", 24))
    with pytest.raises(ModelLoadError, match=r"has no image encoder: put its CLIPVisionModelWithProjection folder at "
                                             r".*ip-adapter/image_encoder, or name it in .*lonely\.json"):
        load_ip_adapter("lonely", tiny_sd15.unet)
    ip_layouts.vision_encoder(folder / "image_encoder", projection_dim=40)
    with pytest.raises(InvalidArgument, match="reads image embeddings of width 24, but its image encoder .* gives 40"):
        load_ip_adapter("lonely", tiny_sd15.unet)


def test_files_that_are_no_ip_adapter_are_refused_in_one_line(tiny_sd15, ip_layouts, folder):
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(folder / "a-lora.safetensors"))
    with pytest.raises(ModelLoadError, match="not an IP-Adapter: it has no image_proj"):
        load_ip_adapter("a-lora", tiny_sd15.unet)
    (folder / "broken.bin").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="cannot read this IP-Adapter file"):
        load_ip_adapter("broken", tiny_sd15.unet)
    face = ip_layouts.h94_state(tiny_sd15.unet, "basic", 24)
    face["ip_adapter.1.to_k_lora.down.weight"] = torch.zeros(4, 32)
    ip_layouts.write(folder / "faceid.safetensors", face)
    with pytest.raises(InvalidArgument, match="FaceID"):
        load_ip_adapter("faceid", tiny_sd15.unet)
