"""A model's generation defaults travel with the model: gouache-tiny's folder and packed file carry
them, any folder may, everything else gets AUTOMATIC1111's."""

import json
import shutil

import pytest

from gouache.errors import ModelLoadError
from gouache.models.defaults import A1111, FILE, GenerationDefaults, read_defaults
from gouache.tiny.package import materialize, shipped_files

TINY = GenerationDefaults(cfg_scale=5.0, cfg_truncation=0.5)


def test_the_builtin_declares_its_own(gouache_home, tiny_model):
    assert read_defaults(shipped_files()[0]) == TINY
    assert read_defaults(materialize(gouache_home / "builtin")) == TINY
    assert (tiny_model.default_cfg_scale, tiny_model.default_cfg_truncation) == (5.0, 0.5)


def test_a_copy_of_the_folder_keeps_them_under_any_name(gouache_home, tmp_path):
    """What gouache-tiny is at its best with is a fact about the weights, not about its name."""
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    copy = tmp_path / "my-tiny"
    shutil.copytree(materialize(gouache_home / "builtin"), copy)
    model = load_model(str(copy))
    assert model.name != "gouache-tiny" and model.defaults == TINY
    out = txt2img(model, GenerationRequest("a red circle on a blue background", steps=2, seed=1))[0]
    assert "CFG scale: 5.0" in out.infotext and "CFG truncation: 0.5" in out.infotext
    (copy / FILE).unlink()
    assert load_model(str(copy)).defaults == A1111  # a folder that declares nothing: A1111's CFG 7, every step


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read the model's defaults"),
    (json.dumps({"generation_defaults": {"cfg_scale": "high"}}), "generation_defaults.cfg_scale must be a number"),
    (json.dumps({"generation_defaults": {"steps": 30}}), "keys among cfg_scale, cfg_truncation"),
])
def test_a_bad_file_is_one_error_naming_it(tmp_path, content, message):
    (tmp_path / FILE).write_text(content)
    with pytest.raises(ModelLoadError, match=message) as err:
        read_defaults(tmp_path)
    assert str(tmp_path / FILE) in str(err.value)


def test_single_files_and_foreign_json_get_a1111s(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    assert read_defaults(ckpt) == A1111
    ckpt.with_suffix(".json").write_text("[1, 2]")  # some other tool's sidecar
    assert read_defaults(ckpt) == A1111
