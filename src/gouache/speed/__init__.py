"""The fastest correct path on the machine at hand, and the opt-in approximations on top.

Exact (on by default, chosen by :func:`apply_speed` when a model loads):

- the dtype the hardware multiplies fastest (:mod:`gouache.speed.hardware`): bf16 on CPUs with
  AVX512-BF16 or AMX, fp16 on CUDA (the VAE in bf16, or fp32, where its config says fp16 overflows),
  fp32 elsewhere;
- channels-last memory format for the convolutional models (UNet, VAE, ControlNets);
- :class:`~gouache.speed.attention.GouacheAttnProcessor`: SDPA, with an exact blocked kernel
  for long attention on CPU;
- both CFG halves in one UNet batch, each distinct prompt encoded once per generation (these are
  properties of the one loop, :mod:`gouache.sampling`);
- on CUDA (:mod:`gouache.speed.cuda`, docs/gpu.md): a batch's images in one UNet call, fused QKV
  projections, TF32, no host-device sync inside the loop; CUDA graphs on request;
- on request: ``torch.compile`` of the UNet (``compile=True``), VAE tiling for large images,
  attention slicing, and on CUDA model or sequential CPU offload.

Approximations (per request, off by default; their cost in judged adherence is measured by
``benchmarks/approximations.py``): token merging (:mod:`~gouache.speed.tome`), deep-feature
reuse (:mod:`~gouache.speed.deepcache`), CFG truncation (in :class:`gouache.sampling.guidance.CFGDenoiser`),
and few-step samplers (LCM, with an LCM-LoRA, or Euler a with the "SGM Uniform" schedule for Turbo models).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from gouache.errors import InvalidArgument

ATTENTION = ("auto", "sdpa", "sliced")
OFFLOAD = ("none", "model", "sequential")
PATCHES = ("pack_weights", "cache_text", "share_cfg")  # SpeedSettings' per-generation patches


@dataclass
class SpeedSettings:
    """How a model runs; every choice is exact (the images match the fp32 reference within the
    rounding of the chosen dtype, see ``tests/speed``).

    >>> SpeedSettings(dtype="fp32", attention="sliced").validate()
    """

    dtype: str = "auto"  # auto, fp32, bf16, fp16 (auto: $GOUACHE_DTYPE, else the hardware's best)
    channels_last: bool = True
    attention: str = "auto"  # auto: gouache's processor; sdpa: diffusers' AttnProcessor2_0; sliced: one head slice at a time
    compile: bool = False  # torch.compile the UNet (pays off on GPUs; on this project's 2-core CPU it does not)
    vae_tiling: bool = False  # decode and encode large images in overlapping tiles (less memory, slightly different seams)
    offload: str = "none"  # CUDA only: model (one component on the GPU at a time) or sequential (one layer at a time)
    # gouache's exact patches, installed for each generation (see :func:`generation`)
    pack_weights: bool = True  # oneDNN-packed convolution/linear weights (gouache.speed.packing)
    cache_text: bool = True  # the text's cross-attention keys and values once per generation (gouache.speed.attention)
    share_cfg: bool = True  # the layers CFG's halves share, run once per step (gouache.speed.shared)
    # the CUDA path (gouache.speed.cuda); each is a no-op on CPU, whose path stays per image and bit-exact
    batching: str = "auto"  # auto (batched on CUDA, per image on CPU), batched, per-image
    compile_mode: str = "default"  # torch.compile's mode: default, reduce-overhead (CUDA graphs), max-autotune, ...
    tf32: bool = True  # TF32 matmuls and convolutions for what stays fp32 (CUDA)
    fuse_qkv: bool = True  # self-attention's Q, K, V as one projection (CUDA, without --compile)
    cuda_graphs: bool = False  # replay the UNet's steps from CUDA graphs (CUDA, without --compile; gouache.speed.cuda.GraphedUNet)

    @classmethod
    def reference(cls) -> "SpeedSettings":
        """Plain fp32 with diffusers' SDPA processor, contiguous tensors and none of gouache's
        patches: what stock diffusers runs, the reference the default path is checked against, and
        what the trainers load."""
        return cls(dtype="fp32", channels_last=False, attention="sdpa", pack_weights=False, cache_text=False,
                   share_cfg=False, tf32=False)

    def validate(self) -> None:
        from gouache.speed.hardware import resolve_dtype

        resolve_dtype(self.dtype)
        if self.attention not in ATTENTION:
            raise InvalidArgument(f"`attention` must be one of {', '.join(ATTENTION)}, got {self.attention!r}")
        if self.offload not in OFFLOAD:
            raise InvalidArgument(f"`offload` must be one of {', '.join(OFFLOAD)}, got {self.offload!r}")
        from gouache.speed.cuda import BATCHING, COMPILE_MODES

        if self.batching not in BATCHING:
            raise InvalidArgument(f"`batching` must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise InvalidArgument(f"`compile_mode` must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        for name in ("channels_last", "compile", "vae_tiling", "pack_weights", "cache_text", "share_cfg", "tf32",
                     "fuse_qkv", "cuda_graphs"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgument(f"`{name}` must be True or False, got {getattr(self, name)!r}")


def attention_processor(kind: str):
    """A fresh processor of the registry's ``kind`` (raises on unknown names)."""
    from diffusers.models.attention_processor import AttnProcessor2_0, SlicedAttnProcessor

    from gouache.speed.attention import GouacheAttnProcessor

    if kind == "auto":
        return GouacheAttnProcessor()
    if kind == "sdpa":
        return AttnProcessor2_0()
    if kind == "sliced":
        return SlicedAttnProcessor(slice_size=1)
    raise InvalidArgument(f"`attention` must be one of {', '.join(ATTENTION)}, got {kind!r}")


def set_attention(module, kind: str) -> None:
    """Give every diffusers ``Attention`` layer of ``module`` (UNet, VAE, ControlNet) ``kind``'s processor."""
    if hasattr(module, "set_attn_processor") and getattr(module, "attn_processors", None):
        module.set_attn_processor(attention_processor(kind))


def apply_speed(model, settings: SpeedSettings) -> dict:
    """Make a loaded :class:`~gouache.pipelines.model.LoadedModel` run the way ``settings`` say
    (its components are already in ``model.dtype``); returns what was done, with timings."""
    from gouache.speed.cuda import apply_cuda, check_cuda_options, resolve_batching

    settings.validate()
    pipe, done = model.pipeline, {}
    cuda = torch.device(model.device).type == "cuda"
    check_cuda_options(settings, model.device)
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        set_attention(module, settings.attention)
        if settings.channels_last:
            module.to(memory_format=torch.channels_last)
    done["attention"], done["channels_last"] = settings.attention, settings.channels_last
    for name in PATCHES:
        done[name] = getattr(settings, name)
    done["batched"] = resolve_batching(settings.batching, model.device)
    if cuda:
        done.update(apply_cuda(model, settings))
        # CPU-only patches: oneDNN packing does nothing on a GPU, and the shared CFG prefix compares
        # the halves' values (a wait for the GPU at every layer it patches)
        done["pack_weights"] = done["share_cfg"] = False
    if model.dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        # SD's VAE overflows in fp16 (SDXL's at 1024²); LoadedModel.decode casts the latents. bf16
        # has fp32's range at fp16's speed, where the GPU has it
        from gouache.speed.cuda import vae_upcast_dtype
        from gouache.speed.hardware import dtype_name

        vae_dtype = vae_upcast_dtype(model.device)
        pipe.vae.to(vae_dtype)
        done["vae_dtype"] = dtype_name(vae_dtype)
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
        done["vae_tiling"] = True
    if settings.offload == "model":
        pipe.enable_model_cpu_offload()
    elif settings.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    done["offload"] = settings.offload
    if settings.compile:
        done["compile"] = compile_unet(model, settings.compile_mode)
        done["attention"] = "sdpa"  # what the compiled UNet runs (the infotext's "Attention")
    return done


def compile_unet(model, mode: str = "default") -> dict:
    """``torch.compile`` the UNet in place (inductor, with its on-disk cache in ``$TORCHINDUCTOR_CACHE_DIR``).

    The compile happens at the first call of each input shape; :func:`compile_unet` only wraps, and
    the compiled UNet stays with the model (``gouache serve`` keeps loaded models, so it compiles
    once per model and shape). gouache's CPU attention kernel uses threads that dynamo cannot
    trace, so a compiled UNet uses SDPA. ``mode``: torch.compile's ("reduce-overhead" and
    "max-autotune" capture CUDA graphs). The returned dict's ``compile_s`` fills in with the
    time of each shape's first call (:class:`gouache.speed.cuda.CompileTimes`).
    """
    import logging

    from diffusers.models.attention_processor import AttnProcessor2_0

    from gouache.speed.cuda import CompileTimes

    unet = model.pipeline.unet
    unet.set_attn_processor(AttnProcessor2_0())
    times = CompileTimes(logging.getLogger("gouache.speed").info)
    t0 = time.perf_counter()
    # nn.Module.compile: the module keeps its identity (hooks, attributes, LoRA adapters)
    unet.compile(**({} if mode == "default" else {"mode": mode}))
    times.wrap(unet)  # around the compiled call, outside the traced code
    return {"wrapped_s": time.perf_counter() - t0, "mode": mode, "compile_s": times.seconds}


@contextlib.contextmanager
def token_merging(unet, ratio: float, seed: int = 0):
    """Merge ``ratio`` of the tokens in the UNet's full-resolution self-attention while inside.

    Only layers with gouache's processor merge (the default); the processors are restored after.
    """
    from gouache.speed.attention import GouacheAttnProcessor
    from gouache.speed.tome import TokenMerging

    if not ratio:
        yield None
        return
    tome = TokenMerging(ratio=ratio, seed=seed)
    touched = []
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor") and isinstance(proc, GouacheAttnProcessor):
            touched.append(proc)
    if not touched:
        raise InvalidArgument("token merging needs gouache's attention processor (`attention` auto), "
                              "not the one this model runs with")

    def size(module, args, kwargs):
        x = args[0] if args else kwargs["sample"]
        tome.latent_hw = tuple(x.shape[-2:])

    hook = unet.register_forward_pre_hook(size, with_kwargs=True)
    for proc in touched:
        proc.tome = tome
    try:
        yield tome
    finally:
        hook.remove()
        for proc in touched:
            proc.tome = None



@contextlib.contextmanager
def generation(model, unets=(), nets=(), latent_tokens: int = 0, tome_ratio: float = 0.0):
    """The speed scope of one generation, entered once around everything it runs (the init
    image's encode, every batch, every hires pass and upscale tile, the decodes).

    It sets the thread count for the size of the work (:mod:`gouache.speed.threads`) and installs
    what the model's :class:`SpeedSettings` switched on (``model.speed``, what :func:`apply_speed`
    did; a hand-built model without it gets the defaults): weights packed for oneDNN, the text's
    keys and values computed once, the layers CFG's halves share run once, on ``unets`` (the
    model's, a refiner's) and ``nets`` (ControlNets). With ``tome_ratio``, token merging on the
    ``unets``. Weights must not change inside (LoRAs are fused before).
    """
    from gouache.speed.attention import cross_attention_cache, fused_projections
    from gouache.speed.packing import packed_weights
    from gouache.speed.shared import shared_cfg_prefix
    from gouache.speed.threads import generation_threads, torch_threads

    done = model.speed if model.speed is not None else {}
    patched = [*unets, *nets]
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(generation_threads(latent_tokens)))
        for unet in unets if tome_ratio else ():
            stack.enter_context(token_merging(unet, tome_ratio))
        if done.get("pack_weights", True):
            stack.enter_context(packed_weights(*patched))
        if done.get("cache_text", True):
            stack.enter_context(cross_attention_cache(*patched, runs=not done.get("batched")))
        if done.get("share_cfg", True):
            stack.enter_context(shared_cfg_prefix(*patched))
        if done.get("fuse_qkv", False):
            stack.enter_context(fused_projections(*patched))
        yield
