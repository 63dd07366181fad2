"""The settings every trainer shares (TrainConfig): one check each, in the trainers' and the CLI's words."""

import dataclasses

import pytest

from gouache.errors import InvalidArgument
from gouache.train.captioner import CaptionerTrainConfig
from gouache.train.clip import ClipTrainConfig
from gouache.train.config import TrainConfig
from gouache.train.controlnet import ControlNetTrainConfig
from gouache.train.embedding import EmbeddingTrainConfig
from gouache.train.ip_adapter import IPAdapterTrainConfig
from gouache.train.lcm import LcmLoraTrainConfig
from gouache.train.lora import LoraTrainConfig
from gouache.train.motion import MotionTrainConfig

CONFIGS = [LoraTrainConfig, LcmLoraTrainConfig, EmbeddingTrainConfig, ControlNetTrainConfig]


@pytest.mark.parametrize("cls", [LoraTrainConfig, LcmLoraTrainConfig, EmbeddingTrainConfig])
def test_cache_latents_needs_a_center_crop_in_one_clear_line(cls, tmp_path):
    cfg = cls(tmp_path, tmp_path / "run", cache_latents=True, crop="random")
    with pytest.raises(InvalidArgument) as caught:
        cfg.validate()
    assert str(caught.value) == "`cache_latents` needs `crop` center: random crops change at every step"
    cls(tmp_path, tmp_path / "run", cache_latents=True).validate()  # center crops: fine


def test_the_cli_says_it_with_its_flags(run, tmp_path):
    code, _, err = run("train", "lora", tmp_path, "--out", tmp_path / "run", "--cache-latents", "--crop", "random")
    assert code == 1
    assert err == "gouache: error: --cache-latents needs --crop center: random crops change at every step\n"
    assert not (tmp_path / "run").exists()  # refused before anything was loaded or written


@pytest.mark.parametrize("cls", CONFIGS)
@pytest.mark.parametrize("kw, field", [
    ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr"), ({"grad_accum": 0}, "grad_accum"),
    ({"mixed_precision": "fp8"}, "mixed_precision"), ({"optimizer": "sgd"}, "optimizer"),
    ({"keep_checkpoints": 1}, "keep_checkpoints"), ({"checkpoint_every": -1}, "checkpoint_every"),
    ({"resolution": 0}, "resolution"),
])
def test_every_trainer_checks_the_shared_fields(cls, kw, field, tmp_path):
    with pytest.raises(InvalidArgument, match=f"^`{field}` must be"):
        cls(tmp_path, tmp_path / "run", **kw).validate()


@pytest.mark.parametrize("make, said", [
    (lambda: ControlNetTrainConfig("shapes", "out", preprocessor="canny", crop="random"),
     "`crop` does not apply to ControlNet training; leave it at 'center'"),
    (lambda: ControlNetTrainConfig("shapes", "out", preprocessor="canny", validation_prompts=["a circle"]),
     "`validation_prompts` does not apply to ControlNet training; leave it at \\[\\]"),
    (lambda: LcmLoraTrainConfig("data", "out", noise_offset=0.1),
     "`noise_offset` does not apply to LCM distillation; leave it at 0.0"),
])
def test_a_shared_field_a_trainer_does_not_take_is_refused(make, said):
    with pytest.raises(InvalidArgument, match=said):
        make().validate()


@pytest.mark.parametrize("cls", CONFIGS)
def test_each_trainer_is_a_train_config_with_the_defaults_it_had(cls):
    assert issubclass(cls, TrainConfig)
    lr = {LoraTrainConfig: 1e-4, LcmLoraTrainConfig: 1e-4, EmbeddingTrainConfig: 5e-3, ControlNetTrainConfig: 1e-5}
    cfg = cls("data", "out")
    assert (cfg.lr, cfg.steps, cfg.batch_size, cfg.warmup_steps, cfg.checkpoint_minutes) == (lr[cls], 1000, 4, 50, 5.0)
    assert (cfg.optimizer, cfg.mixed_precision, cfg.keep_checkpoints, cfg.resume) == ("adamw", "no", 2, False)
    with pytest.raises(TypeError):
        cls("data", "out", None)  # past dataset and out_dir, fields are given by name


@pytest.mark.parametrize("trainer, cls", [("lora", LoraTrainConfig), ("lcm-lora", LcmLoraTrainConfig),
                                          ("embedding", EmbeddingTrainConfig), ("controlnet", ControlNetTrainConfig),
                                          ("clip", ClipTrainConfig), ("captioner", CaptionerTrainConfig),
                                          ("ip-adapter", IPAdapterTrainConfig), ("motion", MotionTrainConfig)])
def test_every_shared_field_a_trainer_takes_has_its_flag(trainer, cls):
    from gouache.cli import build_parser

    parser = build_parser()
    command = parser._subparsers._group_actions[0].choices["train"]._subparsers._group_actions[0].choices[trainer]
    options = {o for action in command._actions for o in action.option_strings}
    for f in dataclasses.fields(TrainConfig):
        flag = {"out_dir": "--out", "validation_prompts": "--validation-prompt"}.get(f.name, "--" + f.name.replace("_", "-"))
        if f.name == "dataset":
            continue
        assert (flag in options) == (f.name not in cls.UNUSED), flag
