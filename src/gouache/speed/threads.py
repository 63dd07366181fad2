"""How many CPU threads a generation uses.

PyTorch starts with one intra-op thread per core. A small model's operations are too small to
split: at 64² (8×8 latents) each matmul takes microseconds, so every extra thread only adds
hand-offs, and on a machine where another process is busy the threads wait for each other's time
slices (OpenMP's barriers). gouache therefore runs generations whose latents have at most
``SMALL_LATENT_TOKENS`` positions on one thread, and larger ones on PyTorch's default; the figures
are in docs/speed.md (``benchmarks/threads.py``). ``GOUACHE_THREADS=N`` sets the count for every
generation.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from gouache.errors import InvalidArgument

SMALL_LATENT_TOKENS = 16 * 16  # latents up to 16×16: images up to 128² on SD's VAE (8× down)
ENV = "GOUACHE_THREADS"


def configured() -> int | None:
    """``GOUACHE_THREADS`` as a number of threads, or None when it is not set."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise InvalidArgument(f"{ENV} must be a number of threads from 1 to 1024, got {text!r}")
    return int(text)


def generation_threads(latent_tokens: int) -> int | None:
    """The thread count for a generation whose latents have ``latent_tokens`` positions: the
    configured one, 1 for a small model's, or None (leave PyTorch's)."""
    chosen = configured()
    if chosen is not None:
        return chosen
    return 1 if latent_tokens <= SMALL_LATENT_TOKENS else None


@contextmanager
def torch_threads(n: int | None):
    """Run the block on ``n`` intra-op threads (None: as it is), then restore the count."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
