"""LoRA named in a prompt: found by name, switched on with its weights, off again without a tag."""

import numpy as np
import pytest
import torch
from PIL import Image

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


def test_fused_lora_makes_the_image_of_the_active_lora(model, lora_file):
    from gouache.adapters.lora import LoraRequest, fuse, unfuse

    prompt = "a red circle on a blue background <lora:sharp-edges:0.8>"
    active = image(model, prompt)
    fuse(model, [LoraRequest("sharp-edges", 0.8, 0.8)])
    fused = image(model, prompt)  # the same tags: the fused weights are used as they are
    unfuse(model)
    assert np.abs(fused - active).max() <= 1  # float rounding of the merged weights, at most one level
    assert np.abs(image(model, prompt) - active).max() <= 1


def test_lora_option_is_a_prompt_tag(lora_file, run, tmp_path):
    from gouache.metadata.png import read_infotext

    code, out, err = run("generate", "a red circle", "--lora", "sharp-edges:0.8", "--steps", 2, "--seed", 3,
                         "--out", tmp_path / "a")
    assert code == 0, err
    text = read_infotext(out.split()[0])
    assert text.startswith("a red circle <lora:sharp-edges:0.8>\n") and 'Lora hashes: "sharp-edges: ' in text
    code, out2, _ = run("generate", "a red circle <lora:sharp-edges:0.8>", "--steps", 2, "--seed", 3, "--out", tmp_path / "b")
    assert np.array_equal(np.asarray(Image.open(out.split()[0])), np.asarray(Image.open(out2.split()[0])))


@pytest.mark.parametrize("value", ["sharp-edges:strong", ":0.8", "a:1:2:3"])
def test_bad_lora_option(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as e:
        main(["generate", "a red circle", "--lora", value, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --lora: " in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value,tag", [("x:0.8", "<lora:x:0.8>"), ("x", "<lora:x>"), ("x:0.5:1", "<lora:x:0.5:1>")])
def test_lora_option_tags(value, tag):
    from gouache.cli.common import lora_option

    assert lora_option(value) == tag
