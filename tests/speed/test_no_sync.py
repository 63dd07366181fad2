"""No host-device synchronisation inside the denoising loop, checked on CPU.

On a GPU, anything that reads a device tensor's value on the host (``.item()``, ``bool(t)``,
``torch.equal``, ``.tolist()``, ``nonzero``, a copy to the CPU) makes the CPU wait until the GPU
has finished all the work queued so far, so it cannot queue the next step's kernels ahead. CI has
no GPU, so the test marks the tensors that would live on the GPU (everything the UNet reads and
makes, and so the latents after the first step) with a tensor subclass whose value reads raise,
and runs the loop of the CUDA path (batched, fused QKV, the cross-attention cache) over it.
With CUDA at hand, ``torch.cuda.set_sync_debug_mode("error")`` checks the real thing.
"""

import pytest
import torch

from gouache.pipelines.engine import generation, resolve_request, sample_latents
from gouache.pipelines.model import load_model
from gouache.pipelines.request import GenerationRequest
from gouache.speed import SpeedSettings

# every way to read a tensor's value on the host
READS = {torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.tolist, torch.Tensor.__float__,
         torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.cpu, torch.equal,
         torch.Tensor.equal, torch.Tensor.nonzero, torch.nonzero, torch.Tensor.masked_select, torch.masked_select,
         torch.unique, torch.Tensor.unique}


class HostSync(AssertionError):
    pass


class OnDevice(torch.Tensor):
    """A tensor standing for one on the GPU: reading its value on the host raises."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in READS:
            raise HostSync(f"{getattr(func, '__name__', func)} reads a device tensor on the host")
        return super().__torch_function__(func, types, args, kwargs or {})


def on_device(value, seen: dict = {}):  # noqa: B006 (one marked tensor per tensor: identities stay)
    if isinstance(value, torch.Tensor) and not isinstance(value, OnDevice):
        if id(value) not in seen:
            seen[id(value)] = (value, value.as_subclass(OnDevice))  # the tensor held: its id stays its own
        return seen[id(value)][1]
    if isinstance(value, dict):
        return {k: on_device(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_device(v) for v in value)
    return value


def marked(at):
    """The conditioning schedule ``at`` with its tensors on the "device" (the text encoder's output is)."""
    from dataclasses import fields, replace

    def mark(c):
        return replace(c, **{f.name: on_device(getattr(c, f.name)) for f in fields(c)})

    def at_step(step):
        conds, uncond = at(step)
        return [(mark(c), w) for c, w in conds], mark(uncond)

    return at_step


def mark_unet(unet):
    """The UNet's inputs and outputs become device tensors (the latents follow after one step)."""
    unet.register_forward_pre_hook(lambda mod, args, kwargs: (on_device(args), on_device(kwargs)), with_kwargs=True)
    unet.register_forward_hook(lambda mod, args, out: on_device(out))


def test_the_detector_catches_a_host_read():
    x = torch.ones(2).as_subclass(OnDevice) * 2
    with pytest.raises(HostSync):
        x.sum().item()
    with pytest.raises(HostSync):
        bool((x > 1).all())
    with pytest.raises(HostSync):
        torch.equal(x, x)


@pytest.fixture(scope="module")
def cuda_path_model():
    """gouache-tiny set up as on CUDA (fp32, since the test runs on CPU): batched, fused QKV, no
    CPU-only patches."""
    model = load_model(None, speed=SpeedSettings(dtype="fp32", batching="batched", pack_weights=False,
                                                 share_cfg=False))
    model.speed["fuse_qkv"] = True  # what apply_speed sets on CUDA
    mark_unet(model.unet)
    return model


@pytest.mark.parametrize("sampler,extra", [
    ("DPM++ 2M", {}),
    ("Euler", {"tome_ratio": 0.5}),
    ("DDIM", {"deepcache_interval": 2, "cfg_truncation": 0.5}),
    ("UniPC", {"prompt": "a [red:green:2] circle on a blue background"}),  # the text changes mid-way
])
def test_the_loop_never_reads_a_device_tensor(cuda_path_model, sampler, extra):
    model = cuda_path_model
    req = resolve_request(GenerationRequest(**{"prompt": "a red circle on a blue background", "steps": 4,
                                               "seed": 3, "batch_size": 2, "sampler": sampler, **extra}), model)
    with generation(model, req) as gen:
        latents = sample_latents(model, req, marked(gen.at), [3, 4], None)
    assert isinstance(latents, OnDevice) and latents.shape[0] == 2  # the latents were device tensors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_sync_on_cuda():
    model = load_model(None, device="cuda", dtype="fp16")
    req = resolve_request(GenerationRequest("a red circle on a blue background", steps=4, seed=3, batch_size=2), model)
    with generation(model, req) as gen:
        gen.sample([3, 4], None)  # warm-up: first-call work (cuDNN's choices) may sync
        torch.cuda.set_sync_debug_mode("error")
        try:
            gen.sample([3, 4], None)
        finally:
            torch.cuda.set_sync_debug_mode("default")
