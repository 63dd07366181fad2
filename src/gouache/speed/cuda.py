"""The CUDA default path: what :func:`gouache.speed.apply_speed` adds when a model runs on a GPU.

- fp16 (``--dtype bf16`` where the GPU has it; the choice is :mod:`gouache.speed.hardware`'s), the
  VAE in bf16 (fp32 on GPUs without bf16) where its config says fp16 overflows (SD's, SDXL's:
  ``force_upcast``), else in the model's dtype (an fp16-fix VAE);
- TF32 for what stays fp32 (``SpeedSettings.tf32``: PyTorch's ``allow_tf32`` switches, process-wide);
- PyTorch's SDPA (flash or memory-efficient kernels) through gouache's processor, which keeps
  the text's cross-attention keys and values once per generation (as on CPU) and, on CUDA, runs
  each self-attention's Q, K and V as one fused projection (``SpeedSettings.fuse_qkv``; the fused
  weight is built per generation from the current weights, so LoRAs fused in between stay right);
- the batched path: the images of a batch and CFG's halves in one UNet call
  (``SpeedSettings.batching``: "auto" is batched on CUDA, per image on CPU);
- no host-device synchronisation inside the denoising loop: the timesteps go to the device once
  per loop, the cross-attention cache compares its text by identity rather than by value, ToMe's
  token grid is built once per size, and CFG's batch of conditionings is concatenated once
  (``tests/speed/test_no_sync.py`` runs the loop with a detector);
- ``--compile`` with a mode (``SpeedSettings.compile_mode``): "reduce-overhead" captures CUDA graphs
  for the static shapes of a generation; the compile time of each new shape is measured
  (:class:`CompileTimes`) and kept with the model, so ``gouache serve`` compiles once per model
  and shape and reuses the compiled UNet across requests.

The noise is still drawn on the CPU generator, so a seed gives the same image as on the CPU path
up to floating-point differences.
"""

from __future__ import annotations

import time

import torch

from gouache.errors import InvalidArgument

BATCHING = ("auto", "batched", "per-image")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that capture CUDA graphs


def is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def check_device(device: str) -> str:
    """``device`` if this machine can run a model there; else one line that says why not.

    >>> check_device("cpu")
    'cpu'
    """
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise InvalidArgument(f"`device` must be cpu, cuda, cuda:N or mps, got {device!r}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"`device` {device!r} needs a CUDA GPU, and this machine has none (PyTorch "
                              f"{torch.__version__} sees no CUDA device); use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgument(f"`device` {device!r} needs Apple's Metal (MPS), which this machine lacks; use --device cpu")
    if kind not in ("cpu", "cuda", "mps"):
        raise InvalidArgument(f"`device` must be cpu, cuda, cuda:N or mps, got {device!r}")
    return device


def check_cuda_options(settings, device) -> None:
    """One clear line for a CUDA-only option asked for on another device (offload, CUDA graphs)."""
    if is_cuda(device):
        return
    if settings.offload != "none":
        raise InvalidArgument(f"`offload` {settings.offload!r} moves layers between CPU and GPU; it needs a CUDA "
                              f"device (the model runs on {device})")
    if settings.cuda_graphs:
        raise InvalidArgument(f"`cuda_graphs` replays the UNet from CUDA graphs; it needs a CUDA device (the model "
                              f"runs on {device})")
    if settings.compile and settings.compile_mode in CUDA_GRAPH_MODES:
        raise InvalidArgument(f"`compile_mode` {settings.compile_mode!r} captures CUDA graphs; it needs a CUDA "
                              f"device (the model runs on {device}); use --compile-mode default")


def vae_upcast_dtype(device) -> torch.dtype:
    """The dtype of a VAE that overflows in fp16: bf16 on GPUs that have it, else fp32."""
    return torch.bfloat16 if is_cuda(device) and torch.cuda.is_bf16_supported() else torch.float32


def batched(speed: dict | None) -> bool:
    """Whether a model set up by :func:`gouache.speed.apply_speed` runs a batch in one UNet call."""
    return bool(speed and speed.get("batched"))


def resolve_batching(batching: str, device) -> bool:
    if batching not in BATCHING:
        raise InvalidArgument(f"`batching` must be one of {', '.join(BATCHING)}, got {batching!r}")
    return batching == "batched" or (batching == "auto" and is_cuda(device))


def apply_cuda(model, settings) -> dict:
    """The CUDA-only part of :func:`gouache.speed.apply_speed`; returns what it did."""
    done = {}
    if settings.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        done["tf32"] = True
    done["fuse_qkv"] = settings.fuse_qkv and not settings.compile
    done["cuda_graphs"] = settings.cuda_graphs and not settings.compile  # compile's modes have their own
    return done


class CompileTimes:
    """The wall time of each compiled UNet's first call per input signature (shape and dtype of the
    latents, batch of the conditioning): the compile (and CUDA-graph capture) time, logged and kept
    in ``model.speed["compile_s"]``. Later calls with a known signature cost one dict lookup."""

    def __init__(self, log=None):
        self.seconds: dict[str, float] = {}
        self.log = log

    def wrap(self, unet) -> None:
        """Time ``unet``'s compiled call (after ``unet.compile()``) from outside the compiled code."""
        inner = unet._compiled_call_impl

        def timed(*args, **kwargs):
            x = args[0] if args else kwargs.get("sample")
            ctx = kwargs.get("encoder_hidden_states")
            key = (f"{'x'.join(map(str, x.shape))} {str(x.dtype).removeprefix('torch.')}"
                   f" text {'x'.join(map(str, ctx.shape)) if isinstance(ctx, torch.Tensor) else '-'}")
            if key in self.seconds:
                return inner(*args, **kwargs)
            cuda = x.is_cuda
            if cuda:
                torch.cuda.synchronize()  # once per new signature: the compile is what is timed
            t0 = time.perf_counter()
            out = inner(*args, **kwargs)
            if cuda:
                torch.cuda.synchronize()
            self.seconds[key] = round(time.perf_counter() - t0, 2)
            if self.log is not None:
                self.log(f"compiled the UNet for {key} in {self.seconds[key]:.1f} s")
            return out

        unet._compiled_call_impl = timed


def peak_vram() -> dict | None:
    """The GPU memory high-water mark since the last reset (None without CUDA), in GiB."""
    if not torch.cuda.is_available():
        return None
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3)}


def reset_peak_vram() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


class FusedQKV:
    """Self-attention's Q, K and V projections as one matmul, for one generation.

    The fused weight (``[W_q; W_k; W_v]``) is built at a layer's first call inside the generation
    from the layer's current weights, so it is never stale; layers whose projections are not plain
    ``nn.Linear`` (a peft LoRA wraps them) keep three projections.
    """

    def __init__(self):
        self.weights: dict[int, tuple] = {}

    def __call__(self, attn, hidden_states: torch.Tensor):
        parts = (attn.to_q, attn.to_k, attn.to_v)
        if any(type(p) is not torch.nn.Linear for p in parts):
            return None
        hit = self.weights.get(id(attn))
        if hit is None:
            weight = torch.cat([p.weight for p in parts])
            biases = [p.bias for p in parts]
            bias = None if any(b is None for b in biases) else torch.cat(biases)
            hit = self.weights[id(attn)] = (attn, weight, bias)  # the layer held: its id stays its own
        return torch.nn.functional.linear(hidden_states, hit[1], hit[2]).chunk(3, dim=-1)


class GraphedUNet:
    """The UNet's plain call (no ControlNet residuals, no DeepCache) replayed from CUDA graphs, for
    one batch of one generation: the step's hundreds of kernel launches become one.

    A new input signature (shapes, dtypes, and the conditioning tensors themselves, which the
    engine builds once per text) runs eagerly once (the step's real result, and the warm-up that
    fills the cross-attention cache and the fused QKV weights), then is captured; its later steps
    copy the latents and the timestep into the graph's inputs and replay it. The graphs share one
    memory pool (they never run at the same time). A capture that fails leaves that signature eager.
    Capturing synchronises once per signature; replays do not.
    """

    def __init__(self, unet, log=None):
        self.unet, self.log = unet, log
        self.graphs: dict = {}
        self.pool = None
        self.replays = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, added: dict | None) -> torch.Tensor:
        added_tensors = tuple(v for v in (added or {}).values() if isinstance(v, torch.Tensor))
        added_lists = tuple(e for v in (added or {}).values() if isinstance(v, (list, tuple)) for e in v)
        key = (tuple(x.shape), x.dtype, tuple(t.shape), t.dtype, id(hidden), *map(id, added_tensors + added_lists))
        entry = self.graphs.get(key)
        if entry is None:
            out = self._eager(x, t, hidden, added)
            self.graphs[key] = self._capture(x, t, hidden, added)
            return out
        if entry == "eager":
            return self._eager(x, t, hidden, added)
        graph, static_x, static_t, static_out, _held = entry
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        self.replays += 1
        return static_out.clone()  # the next replay overwrites the graph's output

    def _eager(self, x, t, hidden, added):
        return self.unet(x, t, encoder_hidden_states=hidden, added_cond_kwargs=added, return_dict=False)[0]

    def _capture(self, x, t, hidden, added):
        try:
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            static_x, static_t = x.clone(), t.clone()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                static_out = self._eager(static_x, static_t, hidden, added)
            return graph, static_x, static_t, static_out, (hidden, added)  # the inputs held: their ids stay
        except Exception as exc:  # noqa: BLE001 - any capture failure: this signature stays eager
            if self.log is not None:
                self.log(f"CUDA graph capture failed, running the UNet eagerly: {type(exc).__name__}: {exc}")
            return "eager"


def graphed_call(unet, log=None):
    """A model call (:func:`gouache.sampling.guidance.unet_call`'s form) through :class:`GraphedUNet`."""
    graphed = GraphedUNet(unet, log)

    def call(x, t, c, step: int = 0, slot: int = 0):
        return graphed(x, t, c.hidden, c.added_kwargs())

    call.graphed = graphed
    return call
