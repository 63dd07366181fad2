"""What the recipe writes carries what the recipe declares (gouache.models.facts), packed or as a folder."""

import json

from gouache.models.builtin import load_components
from gouache.models.facts import read_facts
from gouache.models.tiny_architecture import TinyConfig, build_text_encoder, build_unet, build_vae
from gouache.tiny.recipe import GENERATION_DEFAULTS, pack, write_pipeline_folder


def test_packed_and_folder_models_carry_the_recipes_facts(tmp_path):
    cfg = TinyConfig()
    parts = build_vae(cfg), build_text_encoder(cfg), build_unet(cfg)
    weights = pack(*parts, cfg, tmp_path / "gouache-tiny", extra={"recipe": {"diffusion_steps": 2}})
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["config"] == json.loads(json.dumps(cfg.to_dict())) and meta["recipe"] == {"diffusion_steps": 2}
    for facts in (read_facts(weights), read_facts(write_pipeline_folder(*parts, tmp_path / "folder"))):
        assert facts.defaults == GENERATION_DEFAULTS and facts.native_size == 64
        assert facts.preview is None and not facts.figures  # measured on trained weights, not declared by the recipe
    vae, _, _, meta = load_components(weights, weights.with_suffix(".json"))
    assert vae.config.sample_size == 64 and meta["generation_defaults"] == {"cfg_scale": 5.0, "cfg_truncation": 0.5}
