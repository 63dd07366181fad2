"""The dtype gouache picks: by hardware and model size, overridable, with clear errors."""

import pytest
import torch

from gouache.errors import InvalidArgument
from gouache.speed import hardware
from gouache.speed.hardware import BF16_MIN_PARAMS, best_dtype, resolve_dtype


def test_names_and_dtypes():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("float16") is torch.float16
    assert resolve_dtype(torch.float32) is torch.float32


def test_the_environment_overrides_auto(monkeypatch):
    monkeypatch.setenv("GOUACHE_DTYPE", "bf16")
    assert resolve_dtype("auto") is torch.bfloat16
    assert resolve_dtype(None) is torch.bfloat16
    assert resolve_dtype("fp32") is torch.float32  # an explicit choice wins


def test_auto_follows_the_hardware_and_the_model_size(monkeypatch):
    monkeypatch.delenv("GOUACHE_DTYPE", raising=False)
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: True)
    assert best_dtype("cpu", BF16_MIN_PARAMS) is torch.bfloat16
    assert best_dtype("cpu", 5_800_000) is torch.float32  # gouache-tiny: bf16 does not pay off
    assert resolve_dtype("auto", "cpu", 860_000_000) is torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: False)
    assert best_dtype("cpu", BF16_MIN_PARAMS) is torch.float32
    assert best_dtype("cuda") is torch.float16


@pytest.mark.parametrize("bad", ["fp8", "int8", torch.int8])
def test_unknown_dtypes_are_refused(bad):
    with pytest.raises(InvalidArgument, match="dtype"):
        resolve_dtype(bad)


def test_describe_names_the_machine():
    facts = hardware.describe()
    assert facts["cores"] >= 1 and facts["default_dtype"] in ("fp32", "bf16", "fp16")
