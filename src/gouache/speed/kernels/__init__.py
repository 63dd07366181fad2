"""Native CPU kernels, compiled on first use with the machine's C compiler and loaded with ctypes.

There is one: ``attention_bf16.c``, the exact fused attention gouache runs for long bf16
self-attention on CPUs with AVX512-BF16 (see that file for how it works). It is compiled once per
source and compiler into ``$GOUACHE_KERNEL_CACHE`` (default ``~/.cache/gouache/kernels``), written
atomically, and checked against PyTorch on a small problem before it is used. Where there is no
compiler, the CPU lacks AVX512-BF16, the build or the check fails, or ``GOUACHE_KERNELS=0``,
:func:`attention_library` returns ``None`` and gouache uses its PyTorch kernel instead
(:func:`gouache.speed.attention.cpu_attention`); :func:`status` says why.

It is built with OpenMP and calls ``libgomp.so.1``, the runtime PyTorch's CPU wheels load, so its
heads run on PyTorch's own threads: a separate thread pool would share the cores with PyTorch's
threads, which wait spinning for a few milliseconds after each operator (measured: 2.4-3.7 ms
lost per attention call).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("attention_bf16.c")
FLAGS = ("-O3", "-std=gnu11", "-mavx512f", "-mavx512bf16", "-mavx512vl", "-mfma", "-fopenmp", "-shared", "-fPIC")

_lock = threading.Lock()
_state: dict = {}


def cache_dir() -> Path:
    env = os.environ.get("GOUACHE_KERNEL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gouache" / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(source: Path = SOURCE, out_dir: Path | None = None) -> Path:
    """Compile ``source`` into a shared library in the cache (once per source, flags and compiler)."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang; or set $CC)")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    except OSError as exc:
        raise RuntimeError(f"cannot run the C compiler {cc!r}: {exc.strerror or exc}") from None
    key = hashlib.sha256(source.read_bytes() + repr((FLAGS, cc, version)).encode()).hexdigest()[:16]
    out_dir = out_dir or cache_dir()
    target = out_dir / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{source.stem}-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        done = subprocess.run([cc, *FLAGS, str(source), "-o", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
            raise RuntimeError(f"{Path(cc).name} failed: {first}")
        os.replace(tmp, target)  # atomic: a concurrent build or a killed one never leaves half a library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    fn = lib.gouache_attention_bf16
    c_long, c_int, ptr = ctypes.c_long, ctypes.c_int, ctypes.c_void_p
    fn.argtypes = [ptr, c_long, ptr, c_long, ptr, c_long, ptr, c_long, c_int, c_int, c_int, c_int, c_int,
                   ctypes.c_float]
    fn.restype = c_int
    heads = lib.gouache_attention_bf16_heads
    strides = ctypes.POINTER(c_long)
    heads.argtypes = [ptr, strides, ptr, strides, ptr, strides, ptr, strides, c_int, c_int, c_int, c_int, c_int,
                      c_int, ctypes.c_float, c_int, c_int]
    heads.restype = c_int
    return lib


def attention_heads_call(lib, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                         scale: float, threads: int) -> None:
    """Every head: ``out[b, h] = softmax(q[b, h]·k[b, h]ᵀ·scale)·v[b, h]`` for 4-D ``(B, H, L, D)``
    bf16 tensors whose rows are contiguous, on ``threads`` OpenMP threads (each head's queries
    split between them when there are fewer heads than threads)."""
    for t in (q, k, v, out):
        if t.dtype != torch.bfloat16 or t.dim() != 4 or t.stride(3) != 1 or t.device.type != "cpu":
            raise ValueError("the fused kernel takes 4-D bf16 CPU tensors with contiguous rows")
    b, h, lq, dk = q.shape
    if (k.shape[:2] != (b, h) or v.shape[:2] != (b, h) or k.shape[3] != dk or dk % 2 or k.shape[2] != v.shape[2]
            or out.shape != (b, h, lq, v.shape[3])):
        raise ValueError(f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"out {tuple(out.shape)} (the width of q and k must be even)")
    if lq == 0 or b * h == 0:
        return
    split = max(1, -(-threads // (b * h)))

    def st(t):
        return (ctypes.c_long * 3)(t.stride(0), t.stride(1), t.stride(2))

    rc = lib.gouache_attention_bf16_heads(q.data_ptr(), st(q), k.data_ptr(), st(k), v.data_ptr(), st(v),
                                          out.data_ptr(), st(out), b, h, lq, k.shape[2], dk, v.shape[3], scale,
                                          split, max(1, threads))
    if rc != 0:
        raise MemoryError("gouache's fused attention kernel could not allocate its buffers")


def attention_call(lib, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   q_begin: int, q_end: int, scale: float) -> None:
    """One head: ``out[q_begin:q_end] = softmax(q[q_begin:q_end]·kᵀ·scale)·v`` for 2-D bf16 tensors
    whose rows are contiguous (any row stride)."""
    for t in (q, k, v, out):
        if t.dtype != torch.bfloat16 or t.dim() != 2 or t.stride(1) != 1 or t.device.type != "cpu":
            raise ValueError("the fused kernel takes 2-D bf16 CPU tensors with contiguous rows")
    if q.shape[1] != k.shape[1] or q.shape[1] % 2 or k.shape[0] != v.shape[0] or out.shape != (q.shape[0], v.shape[1]):
        raise ValueError(f"shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"out {tuple(out.shape)} (the width of q and k must be even)")
    if not 0 <= q_begin <= q_end <= q.shape[0]:
        raise ValueError(f"query range [{q_begin}, {q_end}) is outside 0..{q.shape[0]}")
    if q_begin == q_end:
        return
    rc = lib.gouache_attention_bf16(q.data_ptr(), q.stride(0), k.data_ptr(), k.stride(0), v.data_ptr(),
                                    v.stride(0), out.data_ptr(), out.stride(0), q_begin, q_end, k.shape[0],
                                    q.shape[1], v.shape[1], scale)
    if rc != 0:
        raise MemoryError("gouache's fused attention kernel could not allocate its buffers")


def _self_check(lib) -> None:
    g = torch.Generator().manual_seed(0)
    for lq, s, dk in ((37, 77, 40), (64, 200, 64), (5, 16, 160)):
        q, k, v = (torch.randn(n, dk, generator=g).bfloat16() for n in (lq, s, s))
        out = torch.empty(lq, dk, dtype=torch.bfloat16)
        attention_call(lib, q, k, v, out, 0, lq, dk**-0.5)
        ref = torch.softmax(q.float() @ k.float().t() * dk**-0.5, -1) @ v.float()
        err = (out.float() - ref).abs().max().item()
        if not err < 0.05:
            raise RuntimeError(f"self-check failed: max error {err:.3g} on a {lq}x{s}x{dk} problem")


def attention_library():
    """The loaded fused-attention library, or ``None`` where it cannot be used here (see :func:`status`)."""
    with _lock:
        if "lib" not in _state:
            _state["lib"], _state["why"] = None, ""
            try:
                if os.environ.get("GOUACHE_KERNELS", "1") == "0":
                    raise RuntimeError("turned off by GOUACHE_KERNELS=0")
                if not torch.cpu._is_avx512_bf16_supported():
                    raise RuntimeError("this CPU has no AVX512-BF16")
                lib = _load(build())
                _self_check(lib)
                _state["lib"], _state["why"] = lib, "in use"
            except Exception as exc:  # any failure means: use the PyTorch kernel
                _state["why"] = str(exc) or type(exc).__name__
                log.info("gouache: fused CPU attention unavailable (%s); using the PyTorch kernel", _state["why"])
        return _state["lib"]


def status() -> str:
    """``"in use"``, or why the fused kernel is not (builds it if that has not been tried yet)."""
    attention_library()
    return _state["why"]


def reset() -> None:
    """Forget the loaded library and the reason (tests; a changed ``GOUACHE_KERNELS``)."""
    with _lock:
        _state.clear()
