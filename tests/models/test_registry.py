"""The models registry: listing $GOUACHE_HOME/checkpoints, resolving names, loading each kind offline."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
from gouache.models.home import models_dir
from gouache.models.registry import BUILTIN, list_models, load_pipeline, resolve_model


@pytest.fixture
def checkpoints(home):
    root = models_dir("checkpoints")
    (root / "sub").mkdir(parents=True)
    (root / "foo.safetensors").write_bytes(b"x" * 10)
    (root / "bar.ckpt").write_bytes(b"x" * 20)
    (root / "sub" / "baz.pt").write_bytes(b"x" * 30)
    (root / "notes.txt").write_text("not a model")
    (root / ".partial.safetensors").write_bytes(b"x")
    (root / "mydiff" / "unet").mkdir(parents=True)
    (root / "mydiff" / "model_index.json").write_text("{}")
    (root / "mydiff" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 5)
    return root


def test_lists_builtin_then_checkpoints(checkpoints):
    listed = [(e.name, e.kind, e.size) for e in list_models()]
    assert listed[0][:2] == (BUILTIN, "builtin")
    assert listed[1:] == [
        ("bar.ckpt", "single-file", 20),
        ("foo.safetensors", "single-file", 10),
        ("mydiff", "diffusers", 7),
        ("sub/baz.pt", "single-file", 30),
    ]


def test_lists_only_builtin_without_a_models_dir(home):
    assert [e.name for e in list_models()] == [BUILTIN]


@pytest.mark.parametrize(
    "asked, name",
    [
        ("foo", "foo.safetensors"),
        ("foo.safetensors", "foo.safetensors"),
        ("foo.safetensors [0123456789]", "foo.safetensors"),  # A1111's title, as infotext has it
        ("bar", "bar.ckpt"),
        ("sub/baz.pt", "sub/baz.pt"),
        ("baz.pt", "sub/baz.pt"),
        ("baz", "sub/baz.pt"),
        ("mydiff", "mydiff"),
        (None, BUILTIN),
        ("", BUILTIN),
        ("gouache-tiny", BUILTIN),
    ],
)
def test_resolves_names(checkpoints, asked, name):
    assert resolve_model(asked).name == name


def test_resolves_paths(checkpoints, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    assert (resolve_model(outside).name, resolve_model(outside).kind) == ("elsewhere.safetensors", "single-file")
    assert resolve_model(str(checkpoints / "sub" / "baz.pt")).name == "sub/baz.pt"
    assert resolve_model(checkpoints / "mydiff").kind == "diffusers"


def test_unknown_name_lists_choices_and_where_to_put_files(checkpoints):
    with pytest.raises(UnknownName) as err:
        resolve_model("qux")
    message = str(err.value)
    assert "unknown model 'qux'" in message
    assert "gouache-tiny, bar.ckpt, foo.safetensors, mydiff, sub/baz.pt" in message
    assert str(checkpoints) in message


def test_ambiguous_stem_asks_which(checkpoints):
    (checkpoints / "foo.ckpt").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="ambiguous; say which: foo.ckpt, foo.safetensors"):
        resolve_model("foo")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing" / "model.safetensors", "no such model file or folder"),
        (lambda d: (d / "plain").mkdir() or d / "plain", "has no model_index.json"),
        (
            lambda d: (d / "model.gguf").write_bytes(b"x") and d / "model.gguf",
            "unsupported checkpoint extension '.gguf'",
        ),
    ],
)
def test_bad_paths(tmp_path, make, message):
    with pytest.raises(ModelLoadError, match=message):
        resolve_model(make(tmp_path))


def test_import_is_light():
    code = "import sys, gouache.models; gouache.models.list_models(); assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- loading ---------------------------------------------------------------------------------


def unet_equal(pipe, unet, rounded_to=None):
    loaded = pipe.unet.state_dict()
    expected = unet.state_dict()
    if rounded_to is not None:
        expected = {k: v.to(rounded_to) for k, v in expected.items()}
    return all(torch.equal(v.to(loaded[k].dtype), loaded[k]) for k, v in expected.items())


def test_loads_a_diffusers_folder_without_tokenizer(home, tiny_components):
    from gouache.models.builtin import write_pipeline_folder

    folder = write_pipeline_folder(*tiny_components, models_dir("checkpoints") / "tinydiff")
    shutil.rmtree(folder / "tokenizer")  # as in folders converted from single files

    pipe, entry = load_pipeline("tinydiff")

    assert (entry.kind, entry.path) == ("diffusers", folder)
    assert pipe.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    assert unet_equal(pipe, tiny_components[2])


def test_loads_a_single_file_by_stem(home, tiny_files, tiny_components, no_shipped_weights):
    models_dir("checkpoints").mkdir(parents=True)
    shutil.copy(tiny_files[".safetensors"], models_dir("checkpoints") / "tiny.safetensors")

    pipe, entry = load_pipeline("tiny", dtype=torch.float16)

    assert (entry.name, entry.kind) == ("tiny.safetensors", "single-file")
    assert pipe.unet.dtype == torch.float16


def test_loads_the_builtin_from_shipped_weights(home, tiny_components, tmp_path, monkeypatch):
    from gouache.models import builtin
    from gouache.models.tiny_architecture import TinyConfig

    weights = builtin.pack(*tiny_components, TinyConfig(), tmp_path / "ship" / "gouache-tiny")
    monkeypatch.setattr(builtin, "shipped_files", lambda: (weights, weights.with_suffix(".json")))

    pipe, entry = load_pipeline(None)

    assert entry.kind == "builtin"
    assert [p.parent for p in models_dir("builtin").glob("*/model_index.json")] != []
    assert pipe.safety_checker is None
    assert unet_equal(pipe, tiny_components[2], rounded_to=torch.float16)  # shipped in float16


def test_builtin_without_weights_says_so(no_shipped_weights):
    with pytest.raises(ModelLoadError, match="built-in model's weights are missing"):
        load_pipeline(BUILTIN)


def test_broken_diffusers_folder_is_a_model_load_error(home):
    folder = models_dir("checkpoints") / "broken"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    with pytest.raises(ModelLoadError, match="broken"):
        load_pipeline("broken")


def test_loads_the_shipped_builtin_when_present(home):
    from gouache.models.builtin import shipped_files

    weights, meta = shipped_files()
    if not weights.is_file():
        pytest.skip("gouache-tiny's weights are not shipped yet")

    pipe, entry = load_pipeline(BUILTIN)

    assert (entry.kind, entry.path, entry.size) == ("builtin", weights, weights.stat().st_size)
    assert pipe.vae.config.scaling_factor == json.loads(meta.read_text())["scaling_factor"]
    assert next(models_dir("builtin").glob("gouache-tiny-*/model_index.json"))
