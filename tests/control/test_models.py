"""Finding and loading ControlNets: diffusers folders, single files, names, the built-in default."""

import pytest
import torch

from gouache.control.models import default_controlnet, list_controlnets, load_controlnet, resolve_controlnet
from gouache.errors import InvalidArgument, ModelLoadError, UnknownName


@pytest.fixture(scope="module")
def installed(gouache_home, tiny_controlnet):
    """The random net saved in $GOUACHE_HOME/controlnet as a folder and as a single file (diffusers keys)."""
    from safetensors.torch import save_file

    root = gouache_home / "controlnet"
    tiny_controlnet.net.save_pretrained(root / "edges-folder")
    (root / "sub").mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in tiny_controlnet.net.state_dict().items()}
    save_file(state, str(root / "sub" / "edges-file.safetensors"))
    yield root


def test_folders_and_single_files_are_listed_and_load_to_the_same_weights(installed, tiny_model, tiny_controlnet):
    names = [e.name for e in list_controlnets()]
    assert "edges-folder" in names and "sub/edges-file.safetensors" in names
    folder = load_controlnet("edges-folder", tiny_model)
    single = load_controlnet("edges-file", tiny_model)  # the config derived from gouache-tiny's UNet
    assert len(folder.hash) == 8 and folder.title == f"edges-folder [{folder.hash}]"
    want = tiny_controlnet.net.state_dict()
    for net in (folder, single):
        got = net.net.state_dict()
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert resolve_controlnet(f"edges-folder [{folder.hash}]").path.name == "edges-folder"  # A1111's title
    assert resolve_controlnet(str(installed / "edges-folder")).kind == "diffusers"  # a path


def test_a_single_file_needs_its_base_or_a_json(installed):
    with pytest.raises(InvalidArgument, match="needs its base model"):
        load_controlnet("edges-file")


def test_unknown_names_list_what_is_installed(installed):
    with pytest.raises(UnknownName, match=r"unknown ControlNet 'nope'; available: .*edges-folder"):
        resolve_controlnet("nope")
    with pytest.raises(ModelLoadError, match="no such ControlNet file"):
        resolve_controlnet("missing/net.safetensors")


def test_defaults():
    assert default_controlnet("gouache-tiny", "canny") == "gouache-tiny-edges"
    with pytest.raises(InvalidArgument, match="no default ControlNet for preprocessor 'depth'"):
        default_controlnet("gouache-tiny", "depth")


def test_the_builtin_edge_controlnet_is_the_default_for_canny_with_gouache_tiny(tiny_model, square):
    from gouache.control.models import builtin_folder
    from gouache.control.spec import ControlSpec
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    if not (builtin_folder() / "config.json").is_file():
        pytest.skip("the built-in ControlNet's weights are not installed")
    out = txt2img(tiny_model, GenerationRequest("a red square on a white background", steps=4, seed=1,
                                                controls=[ControlSpec("canny", square)]))[0]
    assert "Model: gouache-tiny-edges [" in out.infotext
