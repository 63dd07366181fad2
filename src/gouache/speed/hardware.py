"""What the machine at hand can do fast, and the dtype gouache runs models in by default.

bf16 on CPUs that multiply it natively (AVX512-BF16 or AMX: about three times the fp32 matmul rate
here and half the memory traffic) for models big enough to be bound by those multiplications,
fp16 on CUDA, fp32 everywhere else. gouache-tiny's 5.8 M-parameter UNet is bound by per-call
overheads instead, and bf16's conversions make it slower there (``gouache bench``), so small
models stay in fp32. ``$GOUACHE_DTYPE`` (or ``--dtype``)
overrides the choice; the test suite sets it to fp32 so that its expectations do not depend on
the CPU it runs on.
"""

from __future__ import annotations

import os

import torch

from gouache.errors import InvalidArgument

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float": "fp32"}


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX tiles, where oneDNN runs bf16 matmuls and convolutions natively."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


# below this many UNet parameters bf16 does not pay off on CPU (gouache-tiny: 5.8 M; SD 1.5: 860 M)
BF16_MIN_PARAMS = 100_000_000


def resolve_dtype(dtype: str | torch.dtype | None, device: str = "cpu", unet_params: int | None = None) -> torch.dtype:
    """``"auto"``/``None`` (then ``$GOUACHE_DTYPE``, then the hardware's best), a name, or a torch dtype.

    >>> resolve_dtype("fp32"), resolve_dtype(torch.bfloat16)
    (torch.float32, torch.bfloat16)
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InvalidArgument(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype}")
        return dtype
    if dtype is None or dtype == "auto":
        dtype = os.environ.get("GOUACHE_DTYPE") or "auto"
        if dtype == "auto":
            return best_dtype(device, unet_params)
    key = DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if key not in DTYPES:
        raise InvalidArgument(f"`dtype` must be auto, {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[key]


def best_dtype(device: str = "cpu", unet_params: int | None = None) -> torch.dtype:
    """The fastest dtype that keeps Stable Diffusion's images: see the module's docstring.
    ``unet_params``: the UNet's size, when known (None counts as big)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.float16
    if kind == "cpu" and cpu_has_fast_bf16() and (unet_params is None or unet_params >= BF16_MIN_PARAMS):
        return torch.bfloat16
    return torch.float32


def describe() -> dict:
    """The facts about this machine that decide the default path (for ``gouache bench`` reports)."""
    import platform
    import subprocess

    from gouache.speed import kernels

    name = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), name)
    except (OSError, subprocess.SubprocessError):
        pass
    cpu = getattr(torch, "cpu", None)
    flags = {probe[4:-10]: bool(getattr(cpu, probe)()) for probe in
             ("_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported")
             if hasattr(cpu, probe)}
    return {
        "cpu": name,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": flags,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "default_dtype": dtype_name(best_dtype("cuda" if torch.cuda.is_available() else "cpu")),
        "fused_attention": kernels.status(),  # "in use", or why gouache's C kernel is not
    }


_allocator_tuned = False


def tune_allocator() -> bool:
    """Keep big CPU tensors on glibc's heap instead of fresh ``mmap``s (once per process).

    glibc serves allocations above its mmap threshold (at most 32 MB) with ``mmap`` and returns
    them with ``munmap``, so every UNet step and VAE decode at 512² page-faults its large
    activations in again; raising the threshold (and the trim threshold, so freed memory stays
    for the next step) makes them reuse memory, 5-10 % faster per step here, at the same peak.
    It is what jemalloc/tcmalloc preloading does for PyTorch on CPU. ``$GOUACHE_MALLOC=0`` turns it off.
    """
    global _allocator_tuned
    if _allocator_tuned or os.environ.get("GOUACHE_MALLOC") == "0":
        return _allocator_tuned
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _allocator_tuned = ok
    return ok
