"""Textual inversion: only the token's vectors train; both files are written and work in a prompt."""

import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

from gouache.adapters.embeddings import read_embedding
from gouache.errors import InvalidArgument
from gouache.train.embedding import EmbeddingTrainConfig, train_embedding


@pytest.fixture(scope="module")
def dataset(shapes_dataset):
    return shapes_dataset("ti-data", 6, colour="yellow", shape="circle", template="a <sks> on a {background} background")


def config(dataset, out, **kw):
    base = dict(dataset=dataset, out_dir=out, token="<sks>", init_word="circle", num_vectors=2, steps=4,
                batch_size=2, lr=0.05, warmup_steps=1, checkpoint_every=2)
    return EmbeddingTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    from gouache.pipelines.model import load_model

    before = load_model()
    cfg = config(dataset, tmp_path_factory.mktemp("ti-run"))
    return cfg, train_embedding(cfg, log=lambda s: None), before


def test_writes_diffusers_and_a1111_files_with_the_trained_vectors(trained):
    cfg, path, _ = trained
    st = load_file(path)
    assert list(st) == ["<sks>"] and st["<sks>"].shape == (2, 64)
    pt = torch.load(cfg.out_dir / "sks.pt", weights_only=True)
    assert pt["name"] == "<sks>" and pt["string_to_token"] == {"*": 265} and pt["step"] == 4
    assert torch.equal(pt["string_to_param"]["*"], st["<sks>"])
    assert torch.equal(read_embedding(cfg.out_dir / "sks.pt").vectors[""], read_embedding(path).vectors[""])


def test_vectors_start_from_the_init_word_and_move(trained):
    from gouache.models.clip_tokenizer import load_clip_tokenizer

    cfg, path, before = trained
    circle = load_clip_tokenizer()("circle", add_special_tokens=False)["input_ids"][0]
    start = before.pipeline.text_encoder.get_input_embeddings().weight[circle]
    vectors = load_file(path)["<sks>"]
    assert not torch.allclose(vectors[0], start)
    assert torch.isfinite(vectors).all()


def test_nothing_but_the_vectors_changes(trained):
    from gouache.pipelines.model import load_model

    _, _, before = trained
    after = load_model()
    for name in ("unet", "text_encoder", "vae"):
        a, b = getattr(before.pipeline, name).state_dict(), getattr(after.pipeline, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_the_token_works_in_a_prompt(trained, gouache_home):
    from gouache.adapters.embeddings import EmbeddingLibrary
    from gouache.pipelines.model import load_model
    from gouache.prompts.encode import PromptEncoder

    cfg, path, _ = trained
    folder = gouache_home / "ti-test-embeddings"
    folder.mkdir(exist_ok=True)
    (folder / "sks.safetensors").write_bytes(path.read_bytes())
    model = load_model()
    encoder = PromptEncoder(model, embeddings=EmbeddingLibrary.scan(folder))
    plain = PromptEncoder(model).encode("a <sks> on a blue background").hidden
    with_ti = encoder.encode("a <sks> on a blue background").hidden
    assert not torch.allclose(plain, with_ti)
    assert torch.allclose(encoder.encode("a circle on a blue background").hidden,
                          PromptEncoder(model).encode("a circle on a blue background").hidden)


def test_resume_after_a_kill_gives_the_same_vectors(dataset, tmp_path):
    whole = train_embedding(config(dataset, tmp_path / "whole"), log=lambda s: None)

    def kill(line):
        if "step 3/4" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embedding(config(dataset, tmp_path / "killed"), log=kill)
    resumed = train_embedding(config(dataset, tmp_path / "killed"), log=lambda s: None)
    assert torch.equal(load_file(whole)["<sks>"], load_file(resumed)["<sks>"])


@pytest.mark.parametrize("kw,match", [(dict(token="two words"), "token"), (dict(num_vectors=0), "num_vectors"),
                                      (dict(init_word=" "), "init_word")])
def test_bad_settings_are_one_clear_error(dataset, tmp_path, kw, match):
    with pytest.raises(InvalidArgument, match=match):
        train_embedding(config(dataset, tmp_path, **kw), log=lambda s: None)


def test_captions_without_the_token_are_one_error_before_training(dataset, tmp_path):
    with pytest.raises(InvalidArgument, match="no caption contains the token '<other>'") as e:
        train_embedding(config(dataset, tmp_path, token="<other>"), log=lambda s: None)
    assert len(str(e.value).splitlines()) == 1
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written


def test_captions_without_the_token_in_the_cli(dataset, tmp_path, run):
    code, _, err = run("train", "embedding", dataset, "--token", "<other>", "--steps", 2, "--out", tmp_path / "o")
    assert code == 1 and "no caption contains the token '<other>'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("caption,found", [("<cats>, a red circle", True), ("a red circle,<cats>.", True),
                                           ("(<cats>:1.2) on blue", True), ("a <cats> circle", True),
                                           ("a red circle", False), ("a <cat> circle", False)])
def test_the_token_is_found_next_to_punctuation(caption, found):
    from gouache.models.clip_tokenizer import load_clip_tokenizer
    from gouache.train.embedding import check_captions

    if found:
        check_captions([caption], "<cats>", load_clip_tokenizer())
    else:
        with pytest.raises(InvalidArgument, match="no caption contains"):
            check_captions([caption], "<cats>", load_clip_tokenizer())


@pytest.fixture(scope="module")
def comma_dataset(shapes_dataset):
    """Captions as `gouache dataset prepare --prefix "<cats>"` writes them: the token followed by a comma."""
    return shapes_dataset("ti-comma", 4, colour="red", shape="circle", template="<cats>, a red circle on a {background} background")


def test_a_token_followed_by_a_comma_trains(comma_dataset, tmp_path):
    from gouache.models.clip_tokenizer import load_clip_tokenizer
    from gouache.pipelines.model import load_model

    cfg = config(comma_dataset, tmp_path, token="<cats>", steps=3, checkpoint_every=0)
    vectors = load_file(train_embedding(cfg, log=lambda s: None))["<cats>"]
    circle = load_clip_tokenizer()("circle", add_special_tokens=False)["input_ids"][0]
    start = load_model().pipeline.text_encoder.get_input_embeddings().weight[circle]
    assert not torch.allclose(vectors[0], start) and torch.isfinite(vectors).all()


def test_generation_reads_the_token_before_a_comma_as_training_did(trained, gouache_home):
    from gouache.adapters.embeddings import EmbeddingLibrary
    from gouache.pipelines.model import load_model
    from gouache.prompts.encode import PromptEncoder

    _, path, _ = trained
    folder = gouache_home / "ti-comma-embeddings"
    folder.mkdir(exist_ok=True)
    (folder / "renamed.safetensors").write_bytes(path.read_bytes())  # found by its token, not by the stem "sks"
    encoder = PromptEncoder(load_model(), embeddings=EmbeddingLibrary.scan(folder))
    assert torch.equal(encoder.encode("<sks> , a circle").hidden, encoder.encode("<sks>, a circle").hidden)


def test_cli_takes_an_optimizer(dataset, tmp_path, run):
    code, out, err = run("train", "embedding", dataset, "--token", "<sks>", "--steps", 2, "--batch-size", 2,
                         "--optimizer", "adamw", "--out", tmp_path / "run")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "embedding_config.json").read_text())["optimizer"] == "adamw"
    code, _, err = run("train", "embedding", dataset, "--token", "<sks>", "--optimizer", "sgd", "--out", tmp_path / "x")
    assert code == 1 and err == "gouache: error: --optimizer must be one of adamw, adamw8bit, got 'sgd'\n"


def test_adamw8bit_without_bitsandbytes_says_what_to_install(dataset, tmp_path):
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed")
    with pytest.raises(InvalidArgument, match="adamw8bit optimizer needs bitsandbytes"):
        train_embedding(config(dataset, tmp_path, optimizer="adamw8bit"), log=lambda s: None)


def test_cached_latents_and_caption_dropout_train_too(dataset, tmp_path):
    path = train_embedding(config(dataset, tmp_path, steps=2, cache_latents=True, flip=True, caption_dropout=0.5),
                           log=lambda s: None)
    assert torch.isfinite(load_file(path)["<sks>"]).all()
