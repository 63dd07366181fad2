"""gouache.vision.clip on a tiny random CLIP: loading by path and name, embeddings, similarity, rank, CLIP score."""

import shutil

import pytest
import torch

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName
from gouache.vision.clip import clip_score, load_clip

TEXTS = ["a red circle", "a blue square", "a green triangle on a white background", "flat colour"]


def test_embeddings_are_unit_rows(tiny_clip, shapes_images):
    images = tiny_clip.image_embeds(shapes_images)
    texts = tiny_clip.text_embeds(TEXTS)
    assert images.shape == (4, 16) and texts.shape == (4, 16)
    assert torch.allclose(images.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_similarity_is_the_cosine_matrix(tiny_clip, shapes_images):
    sim = tiny_clip.similarity(shapes_images[:3], TEXTS)
    assert sim.shape == (3, 4)
    assert sim.abs().max() <= 1 + 1e-5
    expected = tiny_clip.image_embeds(shapes_images[:3]) @ tiny_clip.text_embeds(TEXTS).T
    assert torch.allclose(sim, expected, atol=1e-5)


def test_batching_does_not_change_an_embedding(tiny_clip, shapes_images, monkeypatch):
    whole = tiny_clip.image_embeds(shapes_images)
    monkeypatch.setattr("gouache.vision.clip.BATCH", 1)
    assert torch.allclose(tiny_clip.image_embeds(shapes_images), whole, atol=1e-5)
    assert torch.allclose(tiny_clip.text_embeds(TEXTS[:2]), tiny_clip.text_embeds(TEXTS)[:2], atol=1e-5)


def test_rank_orders_by_the_similarity(tiny_clip, shapes_images):
    ranked = tiny_clip.rank(shapes_images[0], TEXTS)
    scores = tiny_clip.similarity(shapes_images[:1], TEXTS)[0].tolist()
    assert [t for t, _ in ranked] == [TEXTS[i] for i in sorted(range(4), key=lambda i: -scores[i])]
    assert [s for _, s in ranked] == sorted(scores, reverse=True)
    assert tiny_clip.rank(shapes_images[0], TEXTS, top=2) == ranked[:2]
    assert tiny_clip.rank(shapes_images[0], []) == []


def test_rank_is_the_same_on_every_call(tiny_clip, shapes_images):
    assert tiny_clip.rank(shapes_images[1], TEXTS) == tiny_clip.rank(shapes_images[1], list(TEXTS))


def test_clip_score_is_100_times_the_clamped_own_cosine(tiny_clip, shapes_images):
    prompts = TEXTS[:4]
    cos = (tiny_clip.image_embeds(shapes_images) * tiny_clip.text_embeds(prompts)).sum(-1)
    expected = float((100 * cos.clamp_min(0)).mean())
    score = clip_score(shapes_images, prompts, tiny_clip)
    assert score == pytest.approx(expected, abs=1e-4)
    assert 0 <= score <= 100


def test_clip_score_needs_one_prompt_per_image(tiny_clip, shapes_images):
    with pytest.raises(InvalidArgument, match="one prompt per image"):
        clip_score(shapes_images, TEXTS[:2], tiny_clip)
    with pytest.raises(InvalidArgument, match="at least one image"):
        clip_score([], [], tiny_clip)


def test_a_name_under_gouache_home(tiny_clip_dir, gouache_home, shapes_images, tiny_clip):
    shutil.copytree(tiny_clip_dir, gouache_home / "clip" / "mine", dirs_exist_ok=True)
    with load_clip("mine") as clip:
        assert clip.name == "mine"
        assert torch.allclose(clip.image_embeds(shapes_images[:1]), tiny_clip.image_embeds(shapes_images[:1]), atol=1e-5)
    assert clip.model is None  # released on exit
    with pytest.raises(InvalidArgument, match="closed"):
        clip.text_embeds(["a"])


def test_unknown_names_and_paths(gouache_home, tmp_path):
    (gouache_home / "clip" / "mine").mkdir(parents=True, exist_ok=True)
    with pytest.raises(UnknownName, match="unknown CLIP model 'mne'"):
        load_clip("mne")
    with pytest.raises(ModelLoadError, match="no such CLIP model"):
        load_clip(str(tmp_path / "nothing" / "here"))
    with pytest.raises(ModelLoadError, match="not a CLIP model folder"):
        load_clip(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(ModelLoadError, match="not a loadable CLIP model"):
        load_clip(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "clip_text_model"}')
    with pytest.raises(ModelLoadError, match="describes 'clip_text_model', not a CLIPModel"):
        load_clip(tmp_path)


def test_damaged_weights(tiny_clip_dir, tmp_path):
    folder = shutil.copytree(tiny_clip_dir, tmp_path / "clip")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a loadable CLIP model"):
        load_clip(folder)
    weights.unlink()
    with pytest.raises(ModelLoadError, match="not a loadable CLIP model"):
        load_clip(folder)


def test_weights_of_half_a_model(tiny_clip_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(tiny_clip_dir, tmp_path / "clip")
    tensors = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith("vision_model.")}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="the weights lack .* not a complete CLIPModel"):
        load_clip(folder)


def test_the_builtin_when_absent(monkeypatch, tmp_path):
    monkeypatch.setattr("gouache.vision.folders.ModelFolders.builtin_dir", lambda self: tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="the built-in CLIP is not installed; pass --clip"):
        load_clip()


def test_the_builtin_when_present(monkeypatch, tiny_clip_dir):
    monkeypatch.setattr("gouache.vision.folders.ModelFolders.builtin_dir", lambda self: tiny_clip_dir)
    with load_clip() as clip:
        assert clip.name == "gouache-tiny-clip"
        assert clip.text_embeds(["a"]).shape == (1, 16)
