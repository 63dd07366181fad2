"""IP-Adapter training: the recipe's items, a few steps on the one loop, resume, h94's layout out."""

import json

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.tiny.shapes import HELD_OUT
from gouache.train.ip_adapter import IPAdapterTrainConfig, ip_item, train_ip_adapter


def config(out, **kw):
    base = dict(dataset="shapes", out_dir=out, steps=3, batch_size=2, warmup_steps=1, checkpoint_every=2, eval_n=1,
                validation_steps=2, save_dtype="fp32")
    return IPAdapterTrainConfig(**{**base, **kw})


def test_the_image_prompt_is_another_rendering_and_the_text_mostly_the_background(tmp_path):
    from gouache.tiny.judge import read_image

    cfg = config(tmp_path)
    items = [ip_item(cfg, i) for i in range(400)]
    texts = [it.text for it in items]
    assert 0.5 < sum(t.startswith("on a ") for t in texts) / len(texts) < 0.8
    assert 0.1 < sum(t.startswith("a ") for t in texts) / len(texts) < 0.3
    assert 0.02 < sum(it.drop_image for it in items) / len(items) < 0.18
    for it in items[:40]:
        target, prompt = read_image(it.target), read_image(it.prompt)
        assert (target.colour, target.shape, target.style) == (prompt.colour, prompt.shape, prompt.style)
        assert target.background != prompt.background and (target.colour, target.shape) not in HELD_OUT
        assert it.text in ("", f"on a {target.background} background") or it.text.startswith(f"a {target.colour}")


def test_a_few_steps_resume_and_save_what_the_loader_reads(tmp_path, tiny_model):
    from gouache.adapters.ip_adapter import load_ip_adapter, read_ip_adapter_file

    out = tmp_path / "run"
    train_ip_adapter(config(out, steps=2), log=lambda _: None)
    logs = []
    path = train_ip_adapter(config(out, steps=3, overwrite=True), log=logs.append)
    assert any("resumed from" in line and "step-0000002" in line for line in logs)
    assert path == out / "gouache-tiny-ip-adapter.safetensors"
    state = read_ip_adapter_file(path)
    assert sorted(state["image_proj"]) == ["norm.bias", "norm.weight", "proj.bias", "proj.weight"]
    assert sorted(state["ip_adapter"])[:2] == ["1.to_k_ip.weight", "1.to_v_ip.weight"] and len(state["ip_adapter"]) == 14
    assert json.loads((out / "gouache-tiny-ip-adapter.json").read_text())["image_encoder"] == "gouache-tiny-clip"
    adapter = load_ip_adapter(path, tiny_model.unet, tiny_model.name)
    assert adapter.tokens == 4 and adapter.encoder.config.projection_dim == 64
    trained = adapter.to_k[0].weight
    start = tiny_model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight  # h94's start
    assert trained.shape == start.shape and not torch.equal(trained, start)
    rows = [json.loads(line) for line in (out / "validation" / "figures.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and set(rows[-1]) == {"step", "seen", "held_out"}


@pytest.mark.parametrize("kw,words", [
    ({"dataset": "data/x"}, "reads the procedural dataset `shapes`"),
    ({"full_caption": 0.8, "empty_text": 0.5}, "at most 1"),
    ({"drop_image": 2}, "`drop_image` must be a number from 0 to 1"),
    ({"crop": "random"}, "does not apply to IP-Adapter training"),
])
def test_bad_settings_are_refused_before_anything_loads(tmp_path, kw, words):
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        config(tmp_path, **kw).validate()


def test_a_run_can_start_from_an_adapter_file(tmp_path, tiny_model, ip_layouts):
    """--init-weights: the modules start from the file (a run continued on a changed base, or an
    adapter fine-tuned further); one for another image encoder or base is one clear line."""
    from gouache.train.ip_adapter import IPAdapterModules

    start = ip_layouts.tiny_gouache_adapter(tmp_path, tiny_model.unet, seed=3)
    modules = IPAdapterModules(tiny_model.unet, 64)
    modules.start_from(start, tiny_model.unet, tiny_model.name)
    state = modules.h94_state(torch.float32)
    from safetensors.torch import load_file

    for key, value in load_file(str(start)).items():
        assert torch.equal(state[key], value), key
    assert IPAdapterTrainConfig.__dataclass_fields__["init_weights"].default is None
    other = ip_layouts.write(tmp_path / "wide.safetensors", ip_layouts.h94_state(tiny_model.unet, "basic", 32))
    with pytest.raises(InvalidArgument, match="another image encoder"):
        IPAdapterModules(tiny_model.unet, 64).start_from(other, tiny_model.unet, tiny_model.name)
    with pytest.raises(InvalidArgument, match="is not a file"):
        config(tmp_path, init_weights=str(tmp_path / "none.safetensors")).validate()


def test_distill_takes_the_base_s_prediction_from_the_caption_as_the_target(tmp_path, tiny_model):
    """--distill 1: an adapter that adds nothing, given the whole caption as its text, matches the
    target exactly (loss 0); the plain noise target does not."""
    from gouache.train.ip_adapter import IPAdapterObjective

    cfg = config(tmp_path, full_caption=1.0, empty_text=0.0, drop_image=0.0, drop_text=0.0, drop_both=0.0, distill=1.0)
    objective = IPAdapterObjective(cfg, tiny_model, IPAdapterObjective.load_data(cfg, tiny_model))
    with torch.no_grad():
        for v in objective.modules.to_v:
            v.weight.zero_()  # the image attention's output is zero: the student is the base itself
    assert all(it.text == it.caption for it in objective.items(0))
    torch.manual_seed(0)
    assert objective.loss(objective.modules, 0).item() < 1e-10
    objective.cfg = config(tmp_path, full_caption=1.0, empty_text=0.0, drop_image=0.0, drop_text=0.0, drop_both=0.0)
    torch.manual_seed(0)
    assert objective.loss(objective.modules, 0).item() > 1e-3
    with pytest.raises(InvalidArgument, match="`distill` must be a number from 0 to 1"):
        config(tmp_path, distill=2).validate()


def test_plus_trains_h94_s_resampler_layout_that_diffusers_and_the_loader_read(tmp_path, tiny_model):
    """--projection plus: a Resampler on the image encoder's patch features (h94's ip-adapter-plus
    layout: latents, proj_in/out, norm_out, layers.{i}.0.to_q/to_kv/to_out, layers.{i}.1.{0,1,3}), 16
    tokens; diffusers' converter reads the file back to the same module, gouache loads it as a "hidden"
    adapter, and --init-weights continues from it."""
    from safetensors.torch import load_file

    from gouache.adapters.ip_adapter import load_ip_adapter, read_ip_adapter_file
    from gouache.train.ip_adapter import IPAdapterModules

    out = tmp_path / "run"
    path = train_ip_adapter(config(out, projection="plus"), log=lambda _: None)
    state = read_ip_adapter_file(path)
    proj = state["image_proj"]
    assert proj["latents"].shape == (1, 16, 64) and proj["proj_in.weight"].shape == (64, 128)
    assert proj["layers.3.0.to_kv.weight"].shape == (128, 64) and "layers.3.1.3.weight" in proj
    assert len(state["ip_adapter"]) == 14
    meta = json.loads((out / "gouache-tiny-ip-adapter.json").read_text())
    assert meta["projection"] == "plus" and meta["tokens"] == 16

    modules = IPAdapterModules(tiny_model.unet, 128, "plus")
    modules.start_from(path, tiny_model.unet, tiny_model.name)
    saved = load_file(str(path))
    assert all(torch.equal(modules.h94_state(torch.float32)[k], v) for k, v in saved.items())
    converted = tiny_model.unet._convert_ip_adapter_image_proj_to_diffusers(proj, low_cpu_mem_usage=False)
    hidden = torch.randn(2, 65, 128)
    with torch.no_grad():
        assert torch.allclose(converted(hidden), modules.image_proj(hidden), atol=1e-6)

    adapter = load_ip_adapter(path, tiny_model.unet, tiny_model.name)
    assert adapter.kind == "hidden" and adapter.tokens == 16
    with pytest.raises(InvalidArgument, match="another image encoder, --projection or token count"):
        IPAdapterModules(tiny_model.unet, 64).start_from(path, tiny_model.unet, tiny_model.name)
    with pytest.raises(InvalidArgument, match="`projection` must be one of plain, plus"):
        config(tmp_path, projection="full").validate()


def test_embed_noise_moves_each_image_embedding_by_its_share_of_the_rms(tmp_path, tiny_model):
    """--embed-noise σ: each kept image embedding gets Gaussian noise of σ times its RMS (a dropped one
    stays zero); kept on resume; the plus projection (patch features) refuses it."""
    from gouache.train.ip_adapter import IPAdapterObjective

    cfg = config(tmp_path, batch_size=8, drop_image=0.0, drop_text=0.0, drop_both=0.0, embed_noise=0.5)
    objective = IPAdapterObjective(cfg, tiny_model, IPAdapterObjective.load_data(cfg, tiny_model))
    torch.manual_seed(0)
    noisy = objective.batch(0)[1][:, 0]
    objective.cfg = config(tmp_path, batch_size=8, drop_image=0.0, drop_text=0.0, drop_both=0.0)
    clean = objective.batch(0)[1][:, 0]
    moved = (noisy - clean).pow(2).mean(dim=1).sqrt() / clean.pow(2).mean(dim=1).sqrt()
    assert 0.3 < float(moved.mean()) < 0.7
    dropped = config(tmp_path, batch_size=8, drop_image=1.0, drop_text=0.0, drop_both=0.0, embed_noise=0.5)
    objective.cfg = dropped
    assert torch.equal(objective.batch(0)[1], torch.zeros_like(noisy[:, None]))
    assert IPAdapterObjective.resume_settings(cfg)["--embed-noise"] == "0.5"
    with pytest.raises(InvalidArgument, match="`embed_noise` is for the plain and parts projections"):
        config(tmp_path, embed_noise=0.5, projection="plus").validate()


def test_the_parts_projection_reads_colour_and_shape_apart_and_saves_as_plain(tmp_path, tiny_model):
    """--projection parts: two tokens read the embedding's colour part, two its shape part, each blind to
    the other (the same colour drawn as another shape moves a colour token far less than another colour
    does); the file is h94's plain layout, and loaded back it gives the tokens the training module gave."""
    from dataclasses import replace

    from gouache.adapters.ip_adapter import load_ip_adapter, read_ip_adapter_file
    from gouache.tiny.shapes import draw, random_spec
    from gouache.train.ip_adapter import IPAdapterObjective, ip_modules

    cfg = config(tmp_path / "run", projection="parts", steps=2)
    encoder, processor = IPAdapterObjective.load_data(cfg, tiny_model)
    modules = ip_modules(cfg, tiny_model.unet, encoder, processor)
    parts = modules.image_proj.parts
    assert parts.shape == (4, 64, 64) and torch.allclose(parts @ parts, parts, atol=1e-4)  # projectors
    import random
    spec = random_spec(random.Random(5), colour="red", shape="circle", background="white")
    specs = [spec, replace(spec, shape="square"), replace(spec, colour="blue")]
    with torch.no_grad():
        embeds = encoder(pixel_values=processor(images=[draw(s) for s in specs], return_tensors="pt")["pixel_values"]).image_embeds
        read = torch.einsum("kde,ne->nkd", parts, embeds)  # what each token reads
    same_colour, other_colour = (read[1, 0] - read[0, 0]).norm(), (read[2, 0] - read[0, 0]).norm()
    same_shape, other_shape = (read[2, 2] - read[0, 2]).norm(), (read[1, 2] - read[0, 2]).norm()
    assert same_colour < 0.5 * other_colour and same_shape < 0.5 * other_shape
    path = train_ip_adapter(cfg, log=lambda _: None)
    state = read_ip_adapter_file(path)
    assert sorted(state["image_proj"]) == ["norm.bias", "norm.weight", "proj.bias", "proj.weight"]
    assert json.loads((tmp_path / "run" / "gouache-tiny-ip-adapter.json").read_text())["projection"] == "parts"
    adapter = load_ip_adapter(path, tiny_model.unet, tiny_model.name, dtype=torch.float32)
    trained = ip_modules(cfg, tiny_model.unet, encoder, processor)
    from safetensors.torch import load_file

    from gouache.train.checkpoints import last_checkpoint
    trained.load_state_dict(load_file(str(last_checkpoint(tmp_path / "run" / "checkpoints") / "trainable_0.safetensors")),
                            strict=False)
    with torch.no_grad():
        assert torch.allclose(adapter.image_proj(embeds), trained.image_proj(embeds), atol=2e-2)  # fp32 file here
    with pytest.raises(InvalidArgument, match="--projection parts"):  # resumed as plain: refused, not reinterpreted
        train_ip_adapter(config(tmp_path / "run", steps=3, overwrite=True), log=lambda _: None)
