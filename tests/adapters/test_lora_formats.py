"""Every LoRA layout gouache reads has kohya's effect, ``W + m · (up @ down) · alpha/rank``, checked
against a merge computed here from the file's own tensors; a file that cannot be used is one error."""

import pytest
import torch
from safetensors.torch import save_file

from gouache.adapters.lora import LoraRequest, activate, fuse, unfuse
from gouache.errors import ModelLoadError
from gouache.pipelines.model import load_model

# name, layout, which modules, alpha written in the file (None: none), the scale that means
FORMATS = [
    ("kohya", "kohya", "unet+te", 1.0, 0.25),  # sd-scripts' default --network_alpha 1 at rank 4
    ("kohya-locon", "kohya", "unet+conv+te", 8.0, 2.0),
    ("kohya-no-alpha", "kohya", "unet+te", None, 1.0),  # a missing alpha is alpha = rank
    ("diffusers", "diffusers", "unet+te", None, 1.0),
    ("peft", "peft", "unet+conv+te", None, 1.0),
    ("peft-folder", "peft-folder", "unet", 8.0, 2.0),  # adapter_config.json: lora_alpha / r
    ("attn-procs", "attn-procs", "attn", None, 1.0),
]


def modules(loras, which):
    unet = loras.UNET + (loras.CONV if "conv" in which else [])
    if which == "attn":
        unet = [n for n in loras.UNET if ".attn" in n]
    return [("unet", n) for n in unet] + ([("text_encoder", n) for n in loras.TE] if "te" in which else [])


@pytest.mark.parametrize("name,kind,which,alpha,scale", FORMATS, ids=[f[0] for f in FORMATS])
def test_fused_weights_are_the_manual_merge(loras, name, kind, which, alpha, scale):
    model = load_model()
    lora = loras.random_lora(model, 1, modules(loras, which))
    loras.write(loras.folder, f"fmt-{name}", kind, lora, alpha)
    before = {k: loras.layer(model, *k).weight.detach().clone() for k in lora}

    fuse(model, [LoraRequest(f"fmt-{name}", te=0.5, unet=0.7)])
    for (component, module), (down, up) in lora.items():
        m = 0.7 if component == "unet" else 0.5
        expected = before[component, module] + m * loras.delta(down, up) * scale
        torch.testing.assert_close(loras.layer(model, component, module).weight, expected, atol=1e-5, rtol=0,
                                   msg=lambda msg: f"{component} {module}: {msg}")
    unfuse(model)
    for k, w in before.items():
        torch.testing.assert_close(loras.layer(model, *k).weight, w, atol=1e-6, rtol=0)


def test_two_loras_with_their_own_weights(loras):
    model = load_model()
    a = loras.random_lora(model, 2, modules(loras, "unet+conv+te"))
    b = loras.random_lora(model, 3, modules(loras, "unet+te")[2:])
    loras.write(loras.folder, "two-a", "kohya", a, 2.0)
    loras.write(loras.folder, "two-b", "peft", b)
    before = {k: loras.layer(model, *k).weight.detach().clone() for k in a}

    fuse(model, [LoraRequest("two-a", 0.8, 0.8), LoraRequest("two-b", -0.6, 1.3)])
    for k in a:
        m_b = 1.3 if k[0] == "unet" else -0.6
        expected = before[k] + 0.8 * loras.delta(*a[k]) * 0.5 + (m_b * loras.delta(*b[k]) if k in b else 0)
        torch.testing.assert_close(loras.layer(model, *k).weight, expected, atol=1e-5, rtol=0)
    activate(model, [])  # another request unfuses first
    for k, w in before.items():
        torch.testing.assert_close(loras.layer(model, *k).weight, w, atol=1e-6, rtol=0)


def test_active_lora_computes_what_merged_weights_compute(loras, tiny_model):
    """Unfused (peft layers on the side) is the same model as the manually merged weights."""
    model = load_model()
    lora = loras.random_lora(model, 4, modules(loras, "unet+conv"))
    loras.write(loras.folder, "side", "kohya", lora, 1.0)
    merged = load_model()
    with torch.no_grad():
        for k, (down, up) in lora.items():
            loras.layer(merged, *k).weight += 0.9 * loras.delta(down, up) * 0.25
    activate(model, [LoraRequest("side", 0.9, 0.9)])
    x, t, text = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500]), torch.randn(1, 77, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.unet(x, t, text).sample, merged.unet(x, t, text).sample, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(model.unet(x, t, text).sample, tiny_model.unet(x, t, text).sample, atol=1e-3)


def _bad_files(loras, folder, model):
    good = loras.write(folder, "good", "kohya", loras.random_lora(model, 5, modules(loras, "unet")), 1.0)
    data = good.read_bytes()
    other = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320, 1, 1),
             "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4, 1, 1)}
    half = {k: v for k, v in loras.layout("kohya", loras.random_lora(model, 6, modules(loras, "unet"))).items()
            if "lora_up" not in k}
    return {
        "truncated": (data[: len(data) // 2], "cannot read this LoRA file"),
        "zeros": (b"\x00" * 64, "cannot read this LoRA file"),
        "checkpoint": ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, "not a LoRA file"),
        "sd15-lora": (other, "do not fit"),
        "half": (half, "lacks its up weights"),
        "unknown-layer": ({"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": torch.zeros(4, 8)}, "names no layer"),
    }


@pytest.mark.parametrize("case", ["truncated", "zeros", "checkpoint", "sd15-lora", "half", "unknown-layer"])
def test_unusable_file_is_one_error(loras, tmp_path, case, tiny_model):
    content, message = _bad_files(loras, tmp_path, tiny_model)[case]
    path = loras.folder / f"bad-{case}.safetensors"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save_file(content, str(path))
    with pytest.raises(ModelLoadError, match=message) as e:
        activate(load_model(), [LoraRequest(f"bad-{case}", 1.0, 1.0)])
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_pickled_code_is_refused(loras):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = loras.folder / "evil.pt"
    path.write_bytes(pickle.dumps({"lora_unet_x.lora_down.weight": Evil()}))
    with pytest.raises(ModelLoadError, match="cannot read this LoRA file"):
        activate(load_model(), [LoraRequest("evil", 1.0, 1.0)])


def test_corrupt_lora_in_the_cli(loras, run, tmp_path):
    loras.folder.mkdir(parents=True, exist_ok=True)
    (loras.folder / "broken.safetensors").write_bytes(b"\x07" * 100)
    code, out, err = run("generate", "a red circle <lora:broken:0.8>", "--steps", 2, "--out", tmp_path)
    assert code == 1 and err.startswith("gouache: error: ") and "broken.safetensors" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["kohya", "peft"])
def test_sdxl_both_text_encoders(loras, tiny_sdxl, kind):
    targets = [("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"),
               ("text_encoder", "encoder.layers.0.self_attn.q_proj"), ("text_encoder_2", "text_model.encoder.layers.1.mlp.fc2")]  # it keeps `.text_model` in transformers 5
    lora = loras.random_lora(tiny_sdxl, 7, targets)
    name = f"sdxl-{kind}"
    loras.write(loras.folder, name, kind, lora, 2.0 if kind == "kohya" else None)
    scale = 0.5 if kind == "kohya" else 1.0
    before = {k: loras.layer(tiny_sdxl, *k).weight.detach().clone() for k in lora}
    try:
        fuse(tiny_sdxl, [LoraRequest(name, 0.5, 0.7)])
        for k, (down, up) in lora.items():
            m = 0.7 if k[0] == "unet" else 0.5
            torch.testing.assert_close(loras.layer(tiny_sdxl, *k).weight, before[k] + m * loras.delta(down, up) * scale,
                                       atol=1e-5, rtol=0)
    finally:  # the SDXL fixture is shared: leave no LoRA behind
        unfuse(tiny_sdxl)
        tiny_sdxl.pipeline.unload_lora_weights()
        tiny_sdxl.__dict__.pop("_loras", None)
    for k, w in before.items():
        torch.testing.assert_close(loras.layer(tiny_sdxl, *k).weight, w, atol=1e-6, rtol=0)
