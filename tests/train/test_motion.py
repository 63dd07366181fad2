"""Motion adapter training: a few steps on the one loop, resume, the MotionAdapter folder, a frozen base."""

import json

import pytest
import torch

from gouache.errors import InvalidArgument, OutputError
from gouache.train.motion import MotionObjective, MotionTrainConfig, motion_unet, new_adapter, train_motion


def config(out, **kw):
    base = dict(dataset="shapes", out_dir=out, steps=3, batch_size=1, frames=4, warmup_steps=1, checkpoint_every=2,
                eval_n=1, save_dtype="fp32")
    return MotionTrainConfig(**{**base, **kw})


def quiet(line):
    pass


@pytest.fixture(scope="module")
def base_model(gouache_home):
    """gouache-tiny as the trainer's driver loads it (fp32, fresh: the session's shared model carries
    other tests' LoRA layers, which a MotionAdapter cannot be hooked around)."""
    from gouache.pipelines.model import load_model
    from gouache.speed import SpeedSettings

    return load_model(speed=SpeedSettings.reference())


def test_at_step_0_the_video_model_is_the_image_model_frame_by_frame(base_model):
    unet = base_model.unet
    video = motion_unet(unet, new_adapter(unet.config))
    torch.manual_seed(0)
    latents, text, t = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 77, 64), torch.tensor([100, 700])
    with torch.no_grad():
        got = video(latents, t, text.repeat_interleave(3, 0)).sample
        frames = latents.transpose(1, 2).flatten(0, 1)
        want = unet(frames, t.repeat_interleave(3), text.repeat_interleave(3, 0)).sample
    assert torch.allclose(got.transpose(1, 2).flatten(0, 1), want, atol=1e-5)


def test_only_the_motion_modules_train_and_the_base_unet_stays_as_it_was(base_model, tmp_path):
    tiny_model = base_model
    from gouache.train.driver import loop_config
    from gouache.train.loop import train
    from gouache.tiny.motion import MotionDataset

    before = {k: v.clone() for k, v in tiny_model.unet.state_dict().items()}
    cfg = config(tmp_path, steps=2, eval_n=0)
    objective = MotionObjective(cfg, tiny_model, MotionDataset(frames=4))
    spatial = {k: v.clone() for k, v in objective.motion.state_dict().items() if "motion_modules" not in k}
    train(objective, loop_config(cfg), log=quiet)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.unet.state_dict().items())
    after = objective.motion.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in spatial.items())
    trained = [p for n, p in objective.adapter.named_parameters() if n.endswith("proj_out.weight")]
    assert trained and all(p.abs().sum() > 0 for p in trained)  # left zero: the motion modules now act
    assert {p.requires_grad for p in objective.motion.parameters()} == {True, False}


def test_a_run_resumed_after_a_kill_ends_where_an_uninterrupted_one_does(tmp_path):
    from diffusers import MotionAdapter
    from safetensors.torch import load_file

    whole = train_motion(config(tmp_path / "whole", save_dtype="fp16"), log=quiet)

    def kill_after_checkpoint_2(line):
        if "checkpoint" in line and "step-0000002" in line:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_motion(config(tmp_path / "killed", save_dtype="fp16"), log=kill_after_checkpoint_2)
    assert not (tmp_path / "killed" / "gouache-tiny-motion").exists()
    lines = []
    resumed = train_motion(config(tmp_path / "killed", save_dtype="fp16"), log=lines.append)
    assert any("resumed from" in line and "step-0000002" in line for line in lines)
    a = load_file(whole / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {t.dtype for t in a.values()} == {torch.float16}
    assert (whole / "diffusion_pytorch_model.safetensors").stat().st_size < 10e6

    adapter = MotionAdapter.from_pretrained(resumed)  # the layout the video path loads
    assert tuple(adapter.config.block_out_channels) == (64, 128, 128) and adapter.config.motion_max_seq_length == 32
    rows = [json.loads(line) for line in (tmp_path / "whole" / "validation" / "figures.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and set(rows[-1]["seen"]) == {"loss", "opposite_direction", "image_model"}
    with pytest.raises(OutputError, match="exists; choose another --name or --out, or pass --overwrite"):
        train_motion(config(tmp_path / "whole"), log=quiet)


@pytest.mark.parametrize("kw,words", [
    ({"dataset": "data/x"}, "reads the procedural dataset `shapes`"),
    ({"frames": 40}, "`frames` must be between 2 and 32"),
    ({"caption_form": "before"}, "`caption_form` must be one of end, middle"),
    ({"crop": "random"}, "does not apply to motion adapter training"),
    ({"name": "../x"}, "plain folder name"),
    ({"timestep_bias": -1}, "`timestep_bias` must be a number from 0 to 8"),
])
def test_bad_settings_are_refused_before_anything_loads(tmp_path, kw, words):
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        config(tmp_path, **kw).validate()


def test_heads_that_do_not_divide_the_channels_are_refused_before_the_run_writes(tmp_path):
    with pytest.raises(InvalidArgument, match=r"`motion_heads` must divide every block's channels \(64, 128, 128\)"):
        train_motion(config(tmp_path / "run", motion_heads=6), log=quiet)
    assert not (tmp_path / "run").exists()


def test_the_command_line_says_what_is_wrong_in_one_line(run, tmp_path):
    code, out, err = run("train", "motion", "data/x", "--out", tmp_path / "r")
    assert code != 0 and "gouache: error:" in err and "`shapes`" in err and "Traceback" not in err


def test_timestep_bias_draws_high_noise_more_often_and_is_kept_on_resume(tmp_path):
    """--timestep-bias B: the training timesteps' density grows as t^B (B = 2: mean 3/4 of the
    schedule instead of 1/2), from the same uniform draws; the run records it so it cannot change on
    resume, and runs without it resume as before."""
    from diffusers import DDPMScheduler

    from gouache.train.diffusion import DenoisingLoss

    latents = torch.zeros(4000, 1, 1, 1)
    ts = {}
    for bias in (0.0, 2.0):
        loss = DenoisingLoss(DDPMScheduler(num_train_timesteps=1000), timestep_bias=bias)
        torch.manual_seed(0)
        ts[bias] = loss.noised(latents)[1].float()
    assert abs(ts[0.0].mean().item() - 500) < 20 and abs(ts[2.0].mean().item() - 750) < 20
    assert ts[2.0].min() >= 0 and ts[2.0].max() <= 999 and (ts[2.0] >= ts[0.0]).all()
    assert config(tmp_path, timestep_bias=2).sizes()["--timestep-bias"] == "2"
    assert config(tmp_path).sizes()["--timestep-bias"] == "0"  # recorded: a resume cannot add it


def test_learn_words_trains_only_the_motion_words_and_leaves_other_captions_bit_for_bit(base_model, tmp_path):
    """--learn-words: the embedding rows of "moving", "left", "right", "up", "down" train beside the
    adapter (gouache-tiny never saw those words); a caption without them encodes exactly as before, the
    text encoder's own weights do not move, the words are written beside the adapter and
    fold_words puts them into a text encoder for good."""
    from safetensors.torch import load_file

    from gouache.train.diffusion import encode_captions
    from gouache.train.motion import MOTION_WORDS, WORDS_FILE, MotionWords, fold_words

    pipe = base_model.pipeline
    te, tok = pipe.text_encoder, pipe.tokenizer
    image_caption = ["a red circle on a blue background"]
    motion_caption = ["a red circle on a blue background, moving left"]
    with torch.no_grad():
        before_image, before_motion = encode_captions(tok, te, image_caption), encode_captions(tok, te, motion_caption)
    table = te.get_input_embeddings().weight.detach().clone()

    folder = train_motion(config(tmp_path / "run", learn_words=True, words_lr=0.05), log=quiet)
    words = load_file(folder / WORDS_FILE)
    assert set(words) == set(MOTION_WORDS) and all(v.shape == (1, table.shape[1]) for v in words.values())
    ids = [tok(w, add_special_tokens=False).input_ids[0] for w in MOTION_WORDS]
    moved = [w for w, i in zip(MOTION_WORDS, ids) if not torch.equal(words[w][0], table[i])]
    assert "moving" in moved and len(moved) >= 2  # the words of the clips drawn trained
    assert torch.equal(te.get_input_embeddings().weight, table)  # the encoder itself did not
    assert "--learn-words" in config(tmp_path, learn_words=True).sizes()  # cannot change on resume

    vectors = MotionWords(te, tok)
    with torch.no_grad():
        vectors.vectors.copy_(torch.cat([words[w] for w in MOTION_WORDS]))
    hook = vectors.install(te)
    try:
        with torch.no_grad():
            assert torch.equal(encode_captions(tok, te, image_caption), before_image)
            hooked = encode_captions(tok, te, motion_caption)
    finally:
        hook.remove()
    assert not torch.allclose(hooked, before_motion)
    folded = type(te)(te.config)
    folded.load_state_dict(te.state_dict())
    fold_words(folded, tok, words)
    with torch.no_grad():
        assert torch.allclose(encode_captions(tok, folded, motion_caption), hooked, atol=1e-6)
        assert torch.equal(encode_captions(tok, folded, image_caption), before_image)


def test_a_run_can_start_from_an_adapter_folder(base_model, tmp_path):
    """--init-weights: the adapter starts from a MotionAdapter folder (one that already animates,
    continued with other settings); one of another size is one clear line, a missing folder too."""
    from diffusers import MotionAdapter

    from gouache.tiny.motion import MotionDataset

    first = train_motion(config(tmp_path / "first", save_dtype="fp32"), log=quiet)
    cfg = config(tmp_path / "second", init_weights=str(first))
    cfg.validate()
    objective = MotionObjective(cfg, base_model, MotionDataset(frames=4))
    theirs = MotionAdapter.from_pretrained(first).state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in objective.adapter.state_dict().items())
    assert "--init-weights" in cfg.sizes()  # cannot change on resume
    with pytest.raises(InvalidArgument, match="does not fit this run's size"):
        MotionObjective(config(tmp_path / "third", init_weights=str(first), motion_heads=4), base_model,
                        MotionDataset(frames=4))
    with pytest.raises(InvalidArgument, match="is not a MotionAdapter folder"):
        config(tmp_path, init_weights=str(tmp_path / "none")).validate()


def test_direction_contrast_and_x0_weighting(base_model, tmp_path):
    """--direction-contrast: the hinge is zero once the reversed caption does worse by the margin,
    and positive while it does not; --x0-weight-cap weighs high-noise steps up (1/SNR, capped).
    Both are kept on resume; reverse_direction swaps the direction in either caption form."""
    from diffusers import DDPMScheduler

    from gouache.tiny.motion import MotionDataset
    from gouache.train.diffusion import DenoisingLoss
    from gouache.train.motion import reverse_direction

    assert reverse_direction("a red circle on a blue background, moving left") == \
        "a red circle on a blue background, moving right"
    assert reverse_direction("a red circle moving up on a blue background, outline style") == \
        "a red circle moving down on a blue background, outline style"

    cfg = config(tmp_path, direction_contrast=1.0, caption_dropout=0.0, eval_n=0)
    objective = MotionObjective(cfg, base_model, MotionDataset(frames=4))
    torch.manual_seed(0)
    with torch.no_grad():
        total = objective.loss(objective.adapter, 0).item()
    objective.cfg = config(tmp_path, caption_dropout=0.0, eval_n=0)
    torch.manual_seed(0)
    with torch.no_grad():
        plain = objective.loss(objective.adapter, 0).item()
    # at step 0 the motion modules add nothing and the words are the base's: the two captions do about
    # as well, so the hinge (at least the margin of the loss) is on
    assert total > plain * 1.01
    assert cfg.sizes()["--direction-contrast"] == "1"

    loss = DenoisingLoss(DDPMScheduler(num_train_timesteps=1000), x0_weight_cap=20)
    pred, target = torch.ones(3, 4), torch.zeros(3, 4)
    weights = loss.per_item(pred, target, torch.tensor([10, 500, 999]))
    assert weights[0] < 0.1 < 1 < weights[1] < weights[2] == 20
    assert config(tmp_path, x0_weight_cap=20).sizes()["--x0-weight-cap"] == "20"


def test_text_lora_trains_the_cross_attention_with_the_adapter_and_is_written_beside_it(base_model, tmp_path):
    """--text-lora R: a rank-R LoRA on the UNet's cross-attention (attn2's q/k/v/out, not the motion
    modules' attention) trains with the adapter, the base UNet stays as it was, and the LoRA is written
    beside the adapter in kohya's layout (what gouache video applies with it)."""
    from safetensors import safe_open

    from gouache.adapters.motion import CROSS_ATTENTION_LORA
    from gouache.tiny.motion import MotionDataset
    from gouache.train.motion import cross_attention_targets

    targets = cross_attention_targets(base_model.unet)
    assert targets and all(".attn2." in t and "motion_modules" not in t for t in targets)
    before = {k: v.clone() for k, v in base_model.unet.state_dict().items()}
    cfg = config(tmp_path, text_lora=2, eval_n=1)
    assert cfg.sizes()["--text-lora"] == "2"  # cannot change on resume
    objective = MotionObjective(cfg, base_model, MotionDataset(frames=4))
    trainable = {n for n, p in objective.motion.named_parameters() if p.requires_grad}
    assert any("motion_modules" in n for n in trainable) and any(".lora_" in n for n in trainable)
    assert all("motion_modules" in n or (".attn2." in n and ".lora_" in n) for n in trainable)

    folder = train_motion(cfg, log=quiet)
    assert all(torch.equal(before[k], v) for k, v in base_model.unet.state_dict().items())
    with safe_open(folder / CROSS_ATTENTION_LORA, "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
        ups = [f.get_tensor(k) for k in keys if k.endswith("lora_up.weight")]
    assert len(ups) == len(targets) and all(k.startswith("lora_unet_") and "_attn2_" in k for k in keys)
    assert any(u.abs().sum() > 0 for u in ups)  # started at zero, trained
    assert meta["ss_network_dim"] == "2" and meta["gouache_motion_adapter"] == "gouache-tiny-motion"
    figures = json.loads((tmp_path / "validation" / "figures.jsonl").read_text().splitlines()[-1])
    assert figures["seen"]["image_model"] > 0  # measured with the LoRA switched off
    with pytest.raises(InvalidArgument, match="text_lora"):
        config(tmp_path, text_lora=-1).validate()


def test_text_readout_trains_with_the_adapter_and_gouache_video_runs_it_as_trained(base_model, tmp_path):
    """--text-readout: the prompt's readout trains with the adapter, is written beside it, and the
    adapter folder loaded as gouache video loads it gives the training model's prediction."""
    from gouache.adapters.motion import MOTION_TEXT, FrameCount, load_motion
    from gouache.tiny.motion import MotionDataset
    from gouache.train.driver import loop_config
    from gouache.train.loop import train

    cfg = config(tmp_path, text_readout=True, either_way=0.5, readout_labels=1.0, eval_n=0, steps=4)
    assert cfg.sizes()["--text-readout"] == "yes" and cfg.sizes()["--either-way"] == "0.5"  # kept on resume
    objective = MotionObjective(cfg, base_model, MotionDataset(frames=4, either_way=0.5))
    train(objective, loop_config(cfg), log=quiet)
    assert all(p.abs().sum() > 0 for p in objective.readout.out.parameters())  # started at zero, trained (from step 2:
    # until the modules' output projections leave zero, nothing depends on their input)
    folder = tmp_path / cfg.name  # written by the loop at its end
    assert (folder / MOTION_TEXT).is_file()

    motion = load_motion(str(folder))
    torch.manual_seed(0)
    latents, text, t = torch.randn(2, 4, 4, 8, 8), torch.randn(2, 77, 64), torch.tensor(500)
    per_frame = text.repeat_interleave(4, 0)
    with torch.no_grad():
        want = objective.motion(latents, t, per_frame).sample.transpose(1, 2).flatten(0, 1)
        with motion.installed(base_model.unet, FrameCount(4)):
            got = base_model.unet(latents.transpose(1, 2).flatten(0, 1), t, per_frame).sample
        with objective.image_model():  # the modules off: the readout has nothing to steer
            image = objective.motion(latents, t, per_frame).sample.transpose(1, 2).flatten(0, 1)
        plain = base_model.unet(latents.transpose(1, 2).flatten(0, 1), t, per_frame).sample
    assert torch.allclose(got, want, atol=1e-4)
    assert torch.allclose(image, plain, atol=1e-5)


def test_either_way_clips_could_go_either_way_and_leave_the_others_as_they_were():
    import dataclasses

    from gouache.tiny.motion import MotionDataset

    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    plain, mixed = MotionDataset(seed=3), MotionDataset(seed=3, either_way=1.0)
    assert [plain.spec(k) for k in range(20)] == [MotionDataset(seed=3, either_way=0.0).spec(k) for k in range(20)]
    for k in range(200):
        spec = mixed.spec(k)
        assert spec.travel >= 17.5 and spec.start.size >= 19.8  # more than a quarter of the image; a size the judge reads
        for way in (spec, dataclasses.replace(spec, direction=opposite[spec.direction])):
            end = way.at(way.frames - 1)
            assert end.size / 2 < end.cx < 64 - end.size / 2 and end.size / 2 < end.cy < 64 - end.size / 2
    with pytest.raises(ValueError, match="either_way"):
        MotionDataset(either_way=1.5)
    small = MotionDataset(seed=3, either_way=1.0, either_way_max_size=0.31)  # --either-way-max-size
    assert all(abs(small.spec(k).start.size - 0.31 * 64) < 1e-9 for k in range(20))
    assert max(mixed.spec(k).start.size for k in range(200)) > 0.36 * 64  # the default reaches 0.38
    with pytest.raises(ValueError, match="either_way_max_size"):
        MotionDataset(either_way=1.0, either_way_max_size=0.5)


def test_either_way_max_size_is_checked_and_kept_on_resume(tmp_path):
    assert config(tmp_path, either_way=1.0, either_way_max_size=0.34).sizes()["--either-way-max-size"] == "0.34"
    assert "--either-way-max-size" not in config(tmp_path).sizes()  # no either-way clips: nothing to keep
    with pytest.raises(InvalidArgument, match="either_way_max_size"):
        config(tmp_path, either_way=1.0, either_way_max_size=0.6).validate()


def test_readout_labels_teach_the_readout_the_direction_and_need_a_readout(base_model, tmp_path):
    """--readout-labels: a cross-entropy on which way each of 64 captions says (none for the empty
    caption) from the readout's vector; it falls as the readout learns it, at its own learning rate.
    Without --text-readout: one line."""
    from gouache.tiny.motion import MotionDataset

    cfg = config(tmp_path, text_readout=True, readout_labels=1.0)
    objective = MotionObjective(cfg, base_model, MotionDataset(frames=4))
    groups = objective.param_groups(objective.trainable(), cfg.lr)
    assert groups[1]["lr"] == cfg.readout_lr and len(groups[1]["params"]) == len(objective.readout.reader()) + 2
    assert all(any(p is q for q in groups[0]["params"]) for p in objective.readout.out.parameters())  # the adapter's rate
    opt = torch.optim.Adam(groups[1]["params"], lr=3e-3)
    first = float(objective.label_loss(0).detach())
    for _ in range(40):
        loss = objective.label_loss(0)  # one batch again and again: it must be learnt
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 1.0 and float(loss.detach()) < 0.5 * first
    with pytest.raises(InvalidArgument, match="text-readout"):
        config(tmp_path, readout_labels=1.0).validate()


def test_a_readout_run_continues_from_an_adapter_folder_with_its_readout(base_model, tmp_path):
    """--init-weights FOLDER with --text-readout: the folder's readout is where the run starts (a
    folder without one: the readout starts afresh); one that does not fit is one line."""
    from gouache.adapters.motion import MOTION_TEXT
    from gouache.adapters.motion_text import TextReadout
    from gouache.tiny.motion import MotionDataset
    from gouache.train.motion import start_readout_from

    cfg = config(tmp_path, text_readout=True, eval_n=0)
    first = MotionObjective(cfg, base_model, MotionDataset(frames=4))
    for p in first.readout.parameters():
        p.data.normal_(0, 0.1)
    folder = tmp_path / "start"
    first.adapter.save_pretrained(folder)
    (folder / MOTION_TEXT).write_bytes(first.readout.save_bytes(torch.float32))
    again = MotionObjective(config(tmp_path, text_readout=True, eval_n=0, init_weights=str(folder)), base_model,
                            MotionDataset(frames=4))
    mine, theirs = again.readout.state_dict(), first.readout.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    fresh = TextReadout(first.readout.width, first.readout.dims)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    start_readout_from(fresh, tmp_path / "no-such-folder")  # no readout beside it: as it was
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    other = TextReadout(first.readout.width, first.readout.dims, sideways=False)
    with pytest.raises(InvalidArgument, match="does not fit"):
        start_readout_from(other, folder)
