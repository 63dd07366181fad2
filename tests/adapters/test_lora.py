"""LoRA named in a prompt: found by name, switched on with its weights, off again without a tag."""

import numpy as np
import pytest
import torch

from gouache.adapters.lora import find_lora, lora_requests
from gouache.cli import main
from gouache.errors import UnknownName
from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.pipelines.txt2img import txt2img


def write_unet_lora(folder, name):
    """A rank-4 LoRA on the UNet's attention projections, saved in diffusers' LoRA file format."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    unet = load_model().unet  # a private copy to attach the trainable layers to
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name=f"{name}.safetensors")
    return folder / f"{name}.safetensors"


@pytest.fixture(scope="module")
def model():
    return load_model()  # its own copy: LoRA layers stay attached to a model once loaded


@pytest.fixture(scope="module")
def lora_file(gouache_home, model):
    return write_unet_lora(gouache_home / "lora", "sharp-edges")


def image(model, prompt):
    return np.asarray(txt2img(model, GenerationRequest(prompt, steps=4, seed=3))[0].image).astype(int)


def test_lora_changes_the_image_and_switches_off_again(model, lora_file):
    base = image(model, "a red circle on a blue background")
    with_lora = txt2img(model, GenerationRequest("a red circle on a blue background <lora:sharp-edges:1>", steps=4, seed=3))[0]
    assert np.abs(np.asarray(with_lora.image).astype(int) - base).mean() > 1
    assert 'Lora hashes: "sharp-edges: ' in with_lora.infotext
    assert with_lora.infotext.startswith("a red circle on a blue background <lora:sharp-edges:1>\n")
    assert np.array_equal(image(model, "a red circle on a blue background <lora:sharp-edges:0>"), base)
    assert np.array_equal(image(model, "a red circle on a blue background"), base)


@pytest.mark.parametrize(
    "prompt,expected",
    [("x <lora:a:0.5>", [("a", 0.5, 0.5)]), ("<lora:a:0.5:1.2> y", [("a", 0.5, 1.2)]), ("<lora:a>", [("a", 1.0, 1.0)])],
)
def test_requests(prompt, expected):
    assert [(r.name, r.te, r.unet) for r in lora_requests(prompt)] == expected


def test_unknown_lora_names_the_folder(gouache_home, lora_file):
    with pytest.raises(UnknownName) as e:
        find_lora("nope")
    assert str(gouache_home / "lora") in str(e.value) and "sharp-edges" in str(e.value)


def test_unknown_lora_in_the_cli(tmp_path, capsys):
    code = main(["generate", "a red circle <lora:missing:0.8>", "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "LoRA 'missing' not found" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())
