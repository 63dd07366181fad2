"""gouache's attention processor: diffusers' SDPA processor with faster CPU kernels and ToMe.

On a CPU in bf16, PyTorch's fused SDPA kernel is slow for Stable Diffusion's attention (4,096
tokens of head width 40 at 512², five times per UNet step, plus the cross-attention): it spends
about three times the cost of its two matmuls. gouache computes the same ``softmax(q·kᵀ/√d)·v``
exactly, in the same arithmetic (bf16 products, fp32 sums), two ways:

- :func:`fused_attention`: gouache's C kernel (``kernels/attention_bf16.c``, built on first use on
  CPUs with AVX512-BF16): scores, softmax and weighted sum of a block of queries without leaving
  the core's caches; 2.5-3x SDPA's speed on every attention call of SD 1.5;
- :func:`cpu_attention`: PyTorch matmuls one head and a block of queries at a time, for bf16/fp16
  where the C kernel cannot run (no compiler, another CPU, ``GOUACHE_KERNELS=0``); about 25-30 %
  faster than SDPA on the long calls.

The fused kernel spreads heads over PyTorch's own OpenMP threads in one call; the PyTorch kernel
spreads them over a small thread pool whose threads each run single-threaded matmuls (no OpenMP
hand-offs inside small matmuls). ``benchmarks/sd15.py`` measures the result against stock
diffusers. Everything else (fp32, CUDA, masks, gradients) goes to ``F.scaled_dot_product_attention``,
as diffusers' own ``AttnProcessor2_0`` does.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

# the chunked kernel pays off above this many scores per head (1024 x 1024) and with more keys than a prompt
MIN_SCORES = 1 << 20
MIN_KEYS = 256
QUERY_BLOCK = 256
# the fused kernel pays off above this many scores per call (all heads together)
FUSED_MIN_SCORES = 1 << 18
SHORT_KEYS = 32  # up to this many keys (a motion module's frames), two batched matmuls beat SDPA's kernel on CPU

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _single_threaded() -> None:
    torch.set_num_threads(1)  # this worker's own OpenMP setting; the caller's threads are untouched


def _workers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != torch.get_num_threads():
            _pool = ThreadPoolExecutor(torch.get_num_threads(), thread_name_prefix="gouache-attn",
                                       initializer=_single_threaded)
        return _pool


def _fused_library(q: torch.Tensor, k: torch.Tensor, mask):
    """The fused C kernel's library where it applies to this call (bf16 inference on CPU without a mask)."""
    if (q.device.type != "cpu" or q.dtype != torch.bfloat16 or mask is not None or torch.is_grad_enabled()
            or k.shape[-1] % 2):
        return None
    from gouache.speed.kernels import attention_library

    return attention_library()


def use_cpu_kernel(q: torch.Tensor, k: torch.Tensor, mask) -> bool:
    """Whether the PyTorch blocked kernel (:func:`cpu_attention`) beats SDPA for this call
    (long attention in bf16/fp16 on CPU, when the fused kernel cannot run)."""
    return (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and mask is None
            and not torch.is_grad_enabled() and k.shape[-2] >= MIN_KEYS
            and q.shape[-2] * k.shape[-2] >= MIN_SCORES)


def fused_attention(lib, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q·kᵀ/√d)·v`` for ``(B, H, L, D)`` bf16 tensors with gouache's fused C kernel
    (:mod:`gouache.speed.kernels`): one call, heads spread over PyTorch's own OpenMP threads, or,
    with fewer heads than threads (the VAE), each head's queries split between them.

    The result is a ``(B, H, L, D)`` view of a ``(B, L, H, D)`` tensor, so the processor's
    transpose back to ``(B, L, H·D)`` costs no copy.
    """
    from gouache.speed.kernels import attention_heads_call

    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    b, h, lq, d = q.shape
    out = torch.empty(b, lq, h, v.shape[-1], dtype=q.dtype).transpose(1, 2)
    attention_heads_call(lib, q, k, v, out, d**-0.5, torch.get_num_threads())
    return out


def cpu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = QUERY_BLOCK) -> torch.Tensor:
    """``softmax(q·kᵀ/√d)·v`` for ``(B, H, L, D)`` tensors with PyTorch's matmuls, a head and
    ``block`` queries at a time."""
    b, h, lq, d = q.shape
    q = q * d**-0.5
    out = torch.empty(b, h, lq, v.shape[-1], dtype=q.dtype)
    heads = [(i, j) for i in range(b) for j in range(h)]

    def one_head(ij):
        i, j = ij
        kt, vv, qq, oo = k[i, j].t(), v[i, j], q[i, j], out[i, j]
        for s in range(0, lq, block):
            torch.mm(torch.mm(qq[s : s + block], kt).softmax(-1), vv, out=oo[s : s + block])

    if len(heads) >= 2 and torch.get_num_threads() > 1:
        list(_workers().map(one_head, heads))
    else:  # one head (the VAE's attention): blocks of queries, with all threads in each matmul
        for ij in heads:
            one_head(ij)
    return out


def use_fused_kernel(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether the fused kernel pays off for a call it can run (``benchmarks/attention.py``): not for
    tiny calls (SD's 8x8 level: thread hand-offs cost more than the work), nor for fewer heads than
    threads (the VAE's one head: the PyTorch kernel's all-thread matmuls split it better)."""
    heads = q.shape[0] * q.shape[1]
    return heads * q.shape[-2] * k.shape[-2] >= FUSED_MIN_SCORES and heads >= torch.get_num_threads()


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q·kᵀ/√d)·v`` as two batched matmuls: for the many tiny attentions of a motion
    module (one per latent pixel and head, 16 frames long) PyTorch's CPU flash kernel spends more
    on its blocking than on the products (``benchmarks/video.py``: 30 % less time per call)."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    return torch.matmul(scores.softmax(-1), v)


def use_short_attention(q: torch.Tensor, k: torch.Tensor, mask) -> bool:
    return q.device.type == "cpu" and mask is None and not torch.is_grad_enabled() and k.shape[-2] <= SHORT_KEYS


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    lib = _fused_library(q, k, mask)
    if lib is not None and use_fused_kernel(q, k):
        return fused_attention(lib, q, k, v)
    if use_cpu_kernel(q, k, mask):
        return cpu_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)


def _run_length(context: torch.Tensor) -> int:
    """The length of the runs of equal rows ``context`` is made of (a clip's text, one row per frame
    and CFG part), 1 when its rows are not in equal runs. On CPU only: a GPU would have to wait for
    the comparison (the cache's ``runs`` is off on the batched CUDA path)."""
    n = context.shape[0]
    if context.device.type != "cpu" or n < 2 or not torch.equal(context[0], context[1]):
        return 1
    run = 2
    while run < n and torch.equal(context[0], context[run]):
        run += 1
    if n % run or any(not torch.equal(context[s], context[s + k]) for s in range(0, n, run) for k in range(1, run)):
        return 1
    return run


class GouacheAttnProcessor:
    """A diffusers attention processor (same inputs and outputs as ``AttnProcessor2_0``).

    ``tome``: a :class:`gouache.speed.tome.TokenMerging` that merges tokens before this layer's
    self-attention and unmerges its output (set per generation, see :func:`gouache.speed.token_merging`).
    ``temporal``: the layer attends across a clip's frames (a motion module's), so its sequences are
    short and :func:`short_attention` runs them on CPU.
    """

    def __init__(self, tome=None, temporal: bool = False):
        self.tome = tome
        self.temporal = temporal
        self.kv_cache: dict | None = None  # set by cross_attention_cache for one generation
        self.kv_runs = False  # set with it: whether the text's rows are looked at for runs
        self.fused_qkv = None  # a gouache.speed.cuda.FusedQKV, set by fused_projections for one generation

    def _cross_key_value(self, attn, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention's keys and values of the text conditioning, computed once per
        generation while :func:`cross_attention_cache` is on. The same text comes as the same tensor
        at every step (the conditioning schedule and CFG's batch of it are built once per text, see
        :class:`gouache.sampling.guidance.CFGDenoiser`), so it is known by identity: comparing values
        would make the CPU wait for a GPU at every layer. A clip's text comes once per frame (rows in
        runs of the frame count): the cache then holds each run's row once and the rows are repeated
        at each call, so a clip's cache is an image's size."""
        cache = self.kv_cache if self.kv_cache is not None and not torch.is_grad_enabled() else None
        if cache is not None:
            hit = cache.get(id(attn))
            if hit is not None and hit[1] is context:
                _, _, key, value, run = hit
                if run == 1:
                    return key, value
                return key.repeat_interleave(run, 0), value.repeat_interleave(run, 0)
        run = _run_length(context) if cache is not None and self.kv_runs else 1
        rows = context[::run] if run > 1 else context
        source = attn.norm_encoder_hidden_states(rows) if attn.norm_cross else rows
        key, value = attn.to_k(source), attn.to_v(source)
        if cache is not None:  # the layer and the text held: their ids stay their own
            cache[id(attn)] = (attn, context, key, value, run)
        if run > 1:
            return key.repeat_interleave(run, 0), value.repeat_interleave(run, 0)
        return key, value

    def _self_query_key_value(self, attn, hidden_states: torch.Tensor):
        fused = self.fused_qkv(attn, hidden_states) if self.fused_qkv is not None else None
        if fused is not None:
            return fused
        return attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)

        unmerge = None
        if self.tome is not None and encoder_hidden_states is None and attention_mask is None and input_ndim == 3:
            plan = self.tome.plan(hidden_states)
            if plan is not None:
                merge, unmerge = plan
                hidden_states = merge(hidden_states)

        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        if encoder_hidden_states is None:
            query, key, value = self._self_query_key_value(attn, hidden_states)
        else:
            query = attn.to_q(hidden_states)
            key, value = self._cross_key_value(attn, encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if self.temporal and use_short_attention(query, key, attention_mask):
            hidden_states = short_attention(query, key, value)
        else:
            hidden_states = attention(query, key, value, attention_mask)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))  # linear, dropout
        if unmerge is not None:
            hidden_states = unmerge(hidden_states)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        if attn.rescale_output_factor != 1.0:  # x / 1.0 is x: not a pass over the tokens
            hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states


@contextlib.contextmanager
def cross_attention_cache(*models, runs: bool = False):
    """While inside, ``models``' gouache attention layers compute the keys and values of an
    unchanged text conditioning once instead of at every step (a generation's scope: the weights
    must not change inside). ``runs``: look for runs of equal rows in the text (a clip's, one per
    frame) and keep each once — it compares values, so only on the CPU path, where nothing waits."""
    procs = []
    for model in models:
        if model is None or not hasattr(model, "attn_processors"):
            continue
        for proc in model.attn_processors.values():
            if isinstance(proc, GouacheAttnProcessor) and proc.kv_cache is None and all(p is not proc for p in procs):
                proc.kv_cache, proc.kv_runs = {}, runs
                procs.append(proc)
    try:
        yield
    finally:
        for proc in procs:
            proc.kv_cache, proc.kv_runs = None, False


@contextlib.contextmanager
def fused_projections(*models):
    """While inside, ``models``' gouache attention layers run self-attention's Q, K and V as one
    projection (:class:`gouache.speed.cuda.FusedQKV`; the CUDA path: on CPU the oneDNN-packed
    three projections are the fast ones, and one matmul rounds differently from three)."""
    from gouache.speed.cuda import FusedQKV

    fused, procs = FusedQKV(), []
    for model in models:
        if model is None or not hasattr(model, "attn_processors"):
            continue
        for proc in model.attn_processors.values():
            if isinstance(proc, GouacheAttnProcessor) and proc.fused_qkv is None and all(p is not proc for p in procs):
                proc.fused_qkv = fused
                procs.append(proc)
    try:
        yield
    finally:
        for proc in procs:
            proc.fused_qkv = None
