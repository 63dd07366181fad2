"""A model's facts travel with the model: gouache-tiny's folder and packed file carry them, any
folder may, everything else gets AUTOMATIC1111's defaults and its architecture's preview."""

import json
import shutil

import pytest

from gouache.errors import ModelLoadError
from gouache.models.builtin import materialize, shipped_files
from gouache.models.facts import A1111, FILE, NO_FACTS, GenerationDefaults, LatentPreview, ModelFacts, read_facts

TINY = GenerationDefaults(cfg_scale=5.0, cfg_truncation=0.5)


def test_the_builtin_declares_its_own(gouache_home, tiny_model):
    shipped = read_facts(shipped_files()[0])
    assert shipped.defaults == TINY and shipped.native_size == 64
    assert len(shipped.preview.matrix) == 4 and shipped.figures["adherence_cfg5_held_out"] == 1.0
    assert read_facts(materialize(gouache_home / "builtin")) == shipped  # the folder carries every fact
    assert (tiny_model.default_cfg_scale, tiny_model.default_cfg_truncation) == (5.0, 0.5)
    assert tiny_model.defaults == TINY and tiny_model.facts == shipped and tiny_model.native_size == 64


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
    ("{not json", "cannot read the model's facts"),
    (json.dumps({"generation_defaults": {"cfg_scale": "high"}}), "`generation_defaults.cfg_scale` must be a number"),
    (json.dumps({"generation_defaults": {"steps": 30}}), "keys among cfg_scale, cfg_truncation"),
    (json.dumps({"latent_preview": {"matrix": [[1, 0, 0]] * 3}}), "`latent_preview.matrix` must be 4 list"),
    (json.dumps({"latent_preview": {"bias": [0, 0, 0]}}), "`latent_preview` needs a `matrix`"),
    (json.dumps({"native_size": 100}), "`native_size` must be a multiple of 8"),
    (json.dumps({"figures": {"adherence": "all"}}), "`figures.adherence` must be a finite number"),
])
def test_a_bad_file_is_one_error_naming_it(tmp_path, content, message):
    (tmp_path / FILE).write_text(content)
    with pytest.raises(ModelLoadError, match=message) as err:
        read_facts(tmp_path)
    assert str(tmp_path / FILE) in str(err.value) and "\n" not in str(err.value)


def test_facts_round_trip_through_the_file(tmp_path):
    from gouache.models.facts import write_facts

    facts = ModelFacts(TINY, LatentPreview(((0.1, 0.2, 0.3),) * 4, (0.0, -0.5, 0.5)), 256, {"fid": 12.5})
    write_facts(tmp_path, facts)
    assert read_facts(tmp_path) == facts
    (tmp_path / FILE).write_text(json.dumps({"generation_defaults": {}, "by_another_tool": 1}))
    assert read_facts(tmp_path) == NO_FACTS  # keys it does not know are another tool's


def test_single_files_and_foreign_json_get_a1111s(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    assert read_facts(ckpt) == NO_FACTS and read_facts(ckpt).defaults == A1111
    ckpt.with_suffix(".json").write_text("[1, 2]")  # some other tool's sidecar
    assert read_facts(ckpt) == NO_FACTS
