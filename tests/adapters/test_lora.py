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


def test_the_users_lora_shadows_a_shipped_one_of_its_name(gouache_home, lora_file):
    """The user's lora folder comes first (gouache.models.names: earlier groups shadow later ones)."""
    import shutil

    mine = gouache_home / "lora" / "gouache-outline.safetensors"
    shutil.copy(lora_file, mine)
    try:
        assert find_lora("gouache-outline") == mine and find_lora("gouache-outline.safetensors") == mine
    finally:
        mine.unlink()
    assert find_lora("gouache-outline").parent.name == "lora" and find_lora("gouache-outline") != mine


def test_unknown_lora_in_the_cli(tmp_path, capsys):
    code = main(["generate", "a red circle <lora:missing:0.8>", "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "unknown LoRA 'missing'" in err and len(err.strip().splitlines()) == 1
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

    assert lora_option(value).tag == tag


@pytest.fixture(scope="module")
def outside_lora(tmp_path_factory, model):
    """A LoRA file outside the lora folder, in a folder whose name holds a ':' (as a Windows drive does)."""
    return write_unet_lora(tmp_path_factory.mktemp("runs") / "c:ats", "cats")


def test_lora_by_path_on_the_cli_and_again_from_its_image(outside_lora, run, tmp_path):
    from gouache.adapters.lora import short_hash
    from gouache.metadata.png import read_infotext

    code, out, err = run("generate", "a red circle", "--lora", f"{outside_lora}:0.8", "--steps", 2, "--seed", 3,
                         "--out", tmp_path / "a")
    assert code == 0, err
    made = out.split()[0]
    text = read_infotext(made)
    assert text.startswith("a red circle <lora:cats:0.8>\n") and f'Lora hashes: "cats: {short_hash(outside_lora)}"' in text
    code, plain, _ = run("generate", "a red circle", "--steps", 2, "--seed", 3, "--out", tmp_path / "plain")
    assert not np.array_equal(np.asarray(Image.open(made)), np.asarray(Image.open(plain.split()[0])))
    # --from: the LoRA is not in the lora folder; the message names the file to pass, and passing it works
    code, _, err = run("generate", "--from", made, "--out", tmp_path / "b")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "'cats'" in err and short_hash(outside_lora) in err and "--lora path/to/cats.safetensors" in err
    code, again, err = run("generate", "--from", made, "--lora", str(outside_lora), "--out", tmp_path / "c")
    assert code == 0, err
    assert read_infotext(again.split()[0]) == text
    assert np.array_equal(np.asarray(Image.open(made)), np.asarray(Image.open(again.split()[0])))


def test_lora_by_path_in_python(model, outside_lora):
    from gouache.adapters.lora import LoraRequest, activate, use_lora_file

    assert use_lora_file(model, outside_lora) == "cats"
    result = txt2img(model, GenerationRequest("a red circle <lora:cats:0.8>", steps=2, seed=3))[0]
    assert 'Lora hashes: "cats: ' in result.infotext
    assert list(activate(model, [LoraRequest("cats", 0.8, 0.8, path=outside_lora)])) == ["cats"]


@pytest.mark.parametrize("value", ["runs/missing.safetensors:0.8", "./nope/cats.safetensors"])
def test_bad_lora_path_is_one_line(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as e:
        main(["generate", "a red circle", "--lora", value, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not found" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_prompt_tags_name_loras_never_paths(lora_file, outside_lora):
    """Prompts (and so the server) find LoRA by name in the lora folder only, never by a path."""
    for tag in (str(outside_lora), str(outside_lora.with_suffix("")), str(lora_file), "../lora/sharp-edges"):
        with pytest.raises(UnknownName):
            find_lora(tag)
    assert find_lora("sharp-edges") == lora_file


def test_a_path_in_a_prompt_tag_is_refused_on_the_cli(lora_file, tmp_path, capsys):
    code = main(["generate", f"a red circle <lora:{lora_file.with_suffix('')}:1>", "--steps", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "unknown LoRA" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("suffix,tag", [(":0.5", "<lora:my-adapter:0.5>"), ("", "<lora:my-adapter>"), (":0.5:1", "<lora:my-adapter:0.5:1>")])
def test_lora_option_takes_a_peft_adapter_folder(tmp_path, suffix, tag):
    from gouache.cli.common import lora_option

    folder = tmp_path / "d:runs" / "my-adapter"  # a ':' in the path, as C:\ has
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"")
    option = lora_option(f"{folder}{suffix}")
    assert (option.tag, option.name, option.path) == (tag, "my-adapter", folder / "adapter_model.safetensors")
