"""``gouache bench``: gouache's paths against stock diffusers, side by side in one run.

Every *side* runs in its own subprocess (so its peak memory is its own) with the same thread
count, loads the same model, makes one untimed warm-up image of 1 step (which also compiles, for
the sides that compile), then times ``--images`` images. Forward hooks time the UNet and the text
encoder, and ``vae.decode`` is wrapped on the instance, so each side reports seconds per image,
per UNet step, per VAE decode, peak resident memory and load time; the table gives every side's
ratio to the first one (stock diffusers).

Sides (``--sides``; :data:`SIDES`):

- ``stock``: ``diffusers.StableDiffusionPipeline`` as it comes: fp32, its default attention;
- ``diffusers-best``: what a knowledgeable diffusers user picks on this machine: the hardware's
  dtype (bf16 with AVX512-BF16/AMX), channels-last UNet and VAE, ``torch.compile(unet)``;
- ``gouache``: gouache's default, exact path (:mod:`gouache.speed`); ``gouache-compile`` adds ``--compile``;
- approximations on top of it: ``tome`` (ratio 0.5), ``deepcache`` (interval 3), ``cfg-truncation``
  (0.5), ``lcm`` (4 steps of LCM at CFG 1, as with an LCM-LoRA), ``approx`` (ToMe 0.5 + DeepCache 3 + CFG truncation 0.5).

Models: ``--arch sd15`` builds Stable Diffusion 1.5's exact UNet, VAE and text encoder from the
configs gouache ships, with random weights (speed does not depend on their values), once, into
``--cache``; ``--model`` takes any model gouache loads (default: the built-in gouache-tiny).

``--flops`` also counts the UNet's FLOPs per CFG step (``torch.utils.flop_counter`` plus the
attention it misses on CPU) and measures this machine's bf16 and fp32 matmul and 3×3-convolution
peaks, to show how far each side is from the hardware's limit. ``--quality`` judges 64 images per
approximation on gouache-tiny (:mod:`gouache.tiny.evaluate`), so speed-ups come with their cost.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gouache.errors import InvalidArgument

PROMPT = "a watercolour painting of a lighthouse on a cliff at sunset, detailed, soft light"
TINY_PROMPT = "a red circle on a blue background"


@dataclass(frozen=True)
class Side:
    engine: str  # stock, diffusers-best or gouache
    about: str
    request: dict = field(default_factory=dict)  # GenerationRequest fields (approximations)
    speed: dict = field(default_factory=dict)  # SpeedSettings fields
    steps: int | None = None  # instead of --steps (few-step samplers)
    cfg: float | None = None
    sampler: str | None = None
    exact: bool = True


SIDES: dict[str, Side] = {
    "stock": Side("stock", "diffusers StableDiffusionPipeline, fp32, defaults"),
    "diffusers-best": Side("diffusers-best", "diffusers, hardware dtype + channels_last + torch.compile(unet)"),
    "gouache": Side("gouache", "gouache default (exact)"),
    "gouache-compile": Side("gouache", "gouache default + --compile", speed={"compile": True}),
    "tome": Side("gouache", "gouache + ToMe 0.5", request={"tome_ratio": 0.5}, exact=False),
    "deepcache": Side("gouache", "gouache + DeepCache interval 3", request={"deepcache_interval": 3}, exact=False),
    "cfg-truncation": Side("gouache", "gouache + CFG truncation 0.5", request={"cfg_truncation": 0.5}, exact=False),
    "lcm": Side("gouache", "gouache, LCM 4 steps, CFG 1", steps=4, cfg=1.0, sampler="LCM", exact=False),
    "approx": Side("gouache", "gouache + ToMe 0.5 + DeepCache 3 + CFG truncation 0.5",
                   request={"tome_ratio": 0.5, "deepcache_interval": 3, "cfg_truncation": 0.5}, exact=False),
    "approx-10": Side("gouache", "gouache + ToMe 0.5 + CFG truncation 0.5, 10 steps",
                      request={"tome_ratio": 0.5, "cfg_truncation": 0.5}, steps=10, exact=False),
}
DEFAULT_SIDES = ("stock", "diffusers-best", "gouache", "tome", "deepcache", "cfg-truncation", "lcm", "approx", "approx-10")


def side(name: str) -> Side:
    if name not in SIDES:
        raise InvalidArgument(f"unknown benchmark side {name!r}; sides: {', '.join(SIDES)}")
    return SIDES[name]


# --- the random-weight SD 1.5 ---------------------------------------------------------------------


def build_random_sd15(folder: Path) -> Path:
    """SD 1.5 with random weights, from gouache's shipped configs, saved as a diffusers folder (once)."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from gouache.models.clip_tokenizer import EOS, load_clip_tokenizer
    from gouache.models.detect import ARCHITECTURES

    configs = ARCHITECTURES["sd15"].config_path()
    torch.manual_seed(0)
    print(f"building SD 1.5 with random weights from {configs} into {folder} (once) ...", flush=True)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder", local_files_only=True))
    scheduler = PNDMScheduler.from_pretrained(configs, subfolder="scheduler", local_files_only=True)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(pad_token=EOS), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    tmp = folder.with_name(folder.name + ".partial")
    pipe.save_pretrained(tmp)
    tmp.rename(folder)  # only a complete folder counts
    return folder


def model_folder(model: str | None) -> Path:
    """A diffusers folder for ``model`` (gouache's name or path; None: gouache-tiny) that stock diffusers can load."""
    from gouache.models.home import models_dir
    from gouache.models.registry import resolve_model

    entry = resolve_model(model)
    if entry.kind == "builtin":
        from gouache.models.builtin import materialize

        return materialize(models_dir("builtin"))
    if not Path(entry.path).is_dir():
        raise InvalidArgument(f"the stock sides need a diffusers folder; {entry.path} is a single file")
    return Path(entry.path)


# --- timing ---------------------------------------------------------------------------------------


class Timer:
    """Seconds inside a module's forward (or a wrapped method), and how often it ran."""

    def __init__(self):
        self.seconds, self.calls, self.batch_sizes, self._t0 = 0.0, 0, set(), None
        self.threads = set()  # torch's intra-op threads while it ran (gouache picks them per generation)

    def attach(self, module) -> None:
        import torch

        def pre(mod, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()), None)
            if hasattr(x, "shape"):
                self.batch_sizes.add(int(x.shape[0]))
            self.threads.add(torch.get_num_threads())
            self._t0 = time.perf_counter()

        module.register_forward_pre_hook(pre, with_kwargs=True)
        module.register_forward_hook(lambda mod, args, out: self._stop())

    def wrap(self, fn):
        def timed(*args, **kwargs):
            self._t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._stop()
        return timed

    def _stop(self) -> None:
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _stock_side(spec: Side, folder: Path | None, prompt: str, size: int, cfg: float):
    """A diffusers ``StableDiffusionPipeline`` side: ``(generate(steps, seed), pipeline, dtype)``."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, LCMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    pipe.scheduler = (LCMScheduler if spec.sampler == "LCM" else DPMSolverMultistepScheduler).from_config(
        pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if spec.engine == "diffusers-best":
        from gouache.speed.hardware import best_dtype

        pipe.to(best_dtype("cpu", sum(p.numel() for p in pipe.unet.parameters())))
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet)

    def generate(n: int, seed: int) -> None:
        pipe(prompt, num_inference_steps=n, guidance_scale=cfg, height=size, width=size,
             generator=torch.Generator("cpu").manual_seed(seed))

    return generate, pipe, str(pipe.unet.dtype)


def _gouache_side(spec: Side, folder: Path | None, model: str | None, prompt: str, size: int, cfg: float):
    """A gouache side: ``(generate(steps, seed), pipeline, dtype)``."""
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img
    from gouache.speed import SpeedSettings

    m = load_model(str(folder) if folder is not None else model, speed=SpeedSettings(**spec.speed))

    def generate(n: int, seed: int) -> None:
        txt2img(m, GenerationRequest(prompt, steps=n, sampler=spec.sampler or "DPM++ 2M", cfg_scale=cfg,
                                     width=size, height=size, seed=seed, **side_request(spec)))

    return generate, m.pipeline, str(m.dtype)


def run_side(name: str, folder: Path | None, model: str | None, size: int, steps: int, images: int,
             prompt: str, cfg: float) -> dict:
    """One side, in this process: load, warm up, time ``images`` images one after another."""
    spec = side(name)
    steps = spec.steps or steps
    cfg = spec.cfg if spec.cfg is not None else cfg
    t0 = time.perf_counter()
    if spec.engine in ("stock", "diffusers-best"):
        generate, pipe, dtype = _stock_side(spec, folder, prompt, size, cfg)
    else:
        generate, pipe, dtype = _gouache_side(spec, folder, model, prompt, size, cfg)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate(1, 0)  # warm-up: first-call costs, and the compile for the compiling sides
    warmup_s = time.perf_counter() - t0
    compile_s = warmup_s if spec.engine == "diffusers-best" or spec.speed.get("compile") else None
    return {"side": name, "about": spec.about, "exact": spec.exact, "dtype": dtype, "steps": steps,
            "images": images, "load_s": load_s, "warmup_s": warmup_s, "compile_s": compile_s,
            **_timed(generate, pipe, steps, images)}


def _timed(generate, pipe, steps: int, images: int) -> dict:
    """``images`` images of ``steps`` steps, with the UNet, VAE decode and text encoder timed apart."""
    import torch

    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    timers = {"unet": Timer(), "vae_decode": Timer(), "text_encoder": Timer()}
    timers["unet"].attach(unet)
    timers["text_encoder"].attach(text_encoder)
    vae.decode = timers["vae_decode"].wrap(vae.decode)
    t0 = time.perf_counter()
    for i in range(images):
        generate(steps, 1 + i)
    total = time.perf_counter() - t0
    u = timers["unet"]
    return {
        "s_per_image": total / images, "images_per_s": images / total,
        "unet_s_per_step": u.seconds / (steps * images), "unet_calls_per_image": u.calls / images,
        # everything between the prompt's encoding and the decode (UNet, DeepCache's shallow branch, sampler)
        "denoise_s_per_step": (total - timers["vae_decode"].seconds - timers["text_encoder"].seconds) / (steps * images),
        "unet_batch_sizes": sorted(u.batch_sizes),
        "vae_decode_s": timers["vae_decode"].seconds / images,
        "text_encoder_s": timers["text_encoder"].seconds / images,
        "peak_rss_mib": peak_rss_mib(), "loadavg_1min_after": os.getloadavg()[0],
        "threads": max(u.threads) if u.threads else torch.get_num_threads(),  # what the UNet ran on
    }


# --- FLOPs and the machine's peaks ----------------------------------------------------------------


def count_flops(folder: Path, size: int) -> dict:
    """FLOPs of one UNet forward at batch 2 (CFG's two halves): counted, plus the attention the
    counter misses on CPU (``4·B·heads·Lq·Lk·head_dim`` per call, from forward hooks); and the same
    for the call as gouache makes it, with CFG's shared first layers computed for one image."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention
    from torch.utils.flop_counter import FlopCounterMode

    from gouache.speed.shared import shared_cfg_prefix

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True).eval()
    attn_flops = []

    def hook(mod, args, kwargs, out):
        hidden = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        if hidden.ndim == 4:
            hidden = hidden.flatten(2).transpose(1, 2)
        b, lq = hidden.shape[:2]
        lk = (context if context is not None else hidden).shape[1]
        if "_gouache_shared" in mod.__dict__ and context is None and all(torch.equal(hidden[0], h) for h in hidden):
            b = 1  # computed for one image and copied (gouache.speed.shared)
        attn_flops.append(4 * b * mod.heads * lq * lk * (mod.inner_dim // mod.heads))

    for m in unet.modules():
        if isinstance(m, Attention):
            m.register_forward_hook(hook, with_kwargs=True)
    latent = size // 8
    x = torch.randn(1, unet.config.in_channels, latent, latent).repeat(2, 1, 1, 1)  # CFG: one latent twice
    context = torch.randn(2, 77, unet.config.cross_attention_dim)

    def count(scope):
        attn_flops.clear()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), scope, counter:
            unet(x, torch.tensor([500, 500]), encoder_hidden_states=context)
        return counter

    counter = count(contextlib.nullcontext())
    by_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    counted = counter.get_total_flops()
    saw_sdpa = any("scaled_dot_product" in k for k in by_op)
    attention = sum(attn_flops)
    shared = count(shared_cfg_prefix(unet))
    gouache = shared.get_total_flops() + (0 if saw_sdpa else sum(attn_flops))
    return {"batch": 2, "latent": latent, "counted_flops": counted, "counter_saw_sdpa": saw_sdpa,
            "attention_flops": attention, "total_flops": counted if saw_sdpa else counted + attention,
            "gouache_flops": gouache, "by_op": by_op}


def best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, after one untimed call (first-call costs)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def write_results(out: Path, result: dict, md: str) -> None:
    """``out`` (JSON) and the Markdown next to it, each written atomically."""
    from gouache.metadata.png import atomic_write_bytes

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(result, indent=2) + "\n").encode(), overwrite=True)
    atomic_write_bytes(out.with_suffix(".md"), md.encode(), overwrite=True)
    print(f"wrote {out} and {out.with_suffix('.md')}")


def measure_peaks(repeats: int = 5) -> dict:
    """GFLOP/s of a 2048² matmul and a 320→320 3×3 convolution at 64² (batch 2, channels-last), bf16 and fp32: the best of ``repeats``."""
    import torch

    def best(fn, flops):
        return flops / best_seconds(fn, repeats) / 1e9

    out = {}
    with torch.no_grad():
        for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            a, b = torch.randn(2048, 2048, dtype=dt), torch.randn(2048, 2048, dtype=dt)
            out[f"matmul_{name}_gflops"] = best(lambda: a @ b, 2 * 2048**3)
            conv = torch.nn.Conv2d(320, 320, 3, padding=1).to(dt).to(memory_format=torch.channels_last)
            x = torch.randn(2, 320, 64, 64, dtype=dt).to(memory_format=torch.channels_last)
            out[f"conv3x3_{name}_gflops"] = best(lambda: conv(x), 2 * 2 * 64 * 64 * 320 * 320 * 9)
    return out


def side_request(spec: Side) -> dict:
    """A gouache side's request fields: guidance on every step, as stock diffusers guides (gouache-tiny's
    own default guides half of them), unless the side is an approximation that sets it."""
    return {"cfg_truncation": 1.0, **spec.request}


def quality(names: list[str], n: int) -> dict:
    """Judged adherence on gouache-tiny (``n`` seen and ``n`` held-out images) for each side that gouache runs."""
    from gouache.tiny.evaluate import EvalConfig, evaluate

    out = {}
    for name in names:
        spec = side(name)
        if spec.engine != "gouache" or spec.speed.get("compile"):
            continue
        cfg = EvalConfig(n=n, request=side_request(spec))
        if spec.steps:
            cfg.steps = spec.steps
        if spec.cfg is not None:
            cfg.cfg_scale = spec.cfg
        if spec.sampler:
            cfg.sampler = spec.sampler
        scores = evaluate(cfg)
        out[name] = {k: {"all_three": s.rate(), "n": s.n} for k, s in scores.items()}
        print(f"quality {name}: " + ", ".join(f"{k} {s.rate():.1%}" for k, s in scores.items()), flush=True)
    return out


# --- the parent -----------------------------------------------------------------------------------


def run_worker(cmd: list[str], name: str, threads: int, env: dict | None = None) -> dict:
    """Run one benchmark side as ``cmd`` in its own process with ``threads`` threads; its result is
    the JSON after the last ``RESULT `` line it prints (``benchmarks/train_lora.py`` uses it too)."""
    # GOUACHE_THREADS: gouache's sides on the same count as the others (it would pick 1 for small latents)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TQDM_DISABLE": "1",
           "GOUACHE_THREADS": str(threads),
           **(env or {})}
    print(f"running {name} ...", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"gouache: error: the {name} side failed (exit code {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def _spawn(args, name: str) -> dict:
    cmd = [sys.executable, "-m", "gouache.bench", "--worker", name, "--size", str(args.size), "--steps", str(args.steps),
           "--images", str(args.images), "--threads", str(args.threads)]
    if args.folder:
        cmd += ["--folder", str(args.folder)]
    if args.model:
        cmd += ["--model", args.model]
    cmd += ["--prompt", args.prompt, "--cfg", str(args.cfg)]
    result = run_worker(cmd, name, args.threads)
    print(f"  {result['s_per_image']:.2f} s per image, {result['denoise_s_per_step']:.3f} s per denoising step, "
          f"{result['threads']} thread(s)", flush=True)
    return result


def markdown(result: dict) -> str:
    cfg, rows = result["config"], result["sides"]
    base = rows[0]
    lines = [f"# gouache bench, {result['date']}", "",
             f"{cfg['model']}, {cfg['size']}x{cfg['size']}, {cfg['steps']} steps DPM++ 2M, CFG {cfg['cfg']}, "
             f"batch 1, {cfg['threads']} threads, {cfg['images']} image(s) per side after a warm-up; "
             f"{result['machine']['cpu']} ({result['machine']['cores']} cores); torch {result['torch']}, "
             f"diffusers {result['diffusers']}; gouache's fused CPU attention kernel: "
             f"{result['machine'].get('fused_attention', 'not reported')}", "",
             f"| side | exact | dtype | threads | steps | s / image | × vs {base['side']} | denoising s / step | full UNet calls / image (batch) "
             "| VAE decode s | peak RSS MiB | load s | compile s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        speedup = base["s_per_image"] / r["s_per_image"]
        lines.append(
            f"| {r['about']} | {'yes' if r['exact'] else 'no'} | {r['dtype'].replace('torch.', '')} | {r.get('threads', '')} | {r['steps']} "
            f"| {r['s_per_image']:.2f} | {speedup:.2f}× | {r['denoise_s_per_step']:.3f} | {r['unet_calls_per_image']:.0f} "
            f"({','.join(map(str, r['unet_batch_sizes']))}) | {r['vae_decode_s']:.2f} | {r['peak_rss_mib']:.0f} "
            f"| {r['load_s']:.1f} | {'' if r['compile_s'] is None else format(r['compile_s'], '.0f')} |")
    named = {r["side"]: r for r in rows}
    if "gouache" in named and "diffusers-best" in named:
        lines += ["", f"gouache default vs diffusers-best: "
                  f"{named['diffusers-best']['s_per_image'] / named['gouache']['s_per_image']:.2f}× per image."]
    f = result.get("flops")
    if f:
        lines += ["", f"UNet FLOPs per CFG step (batch 2, {f['latent']}² latents): {f['total_flops'] / 1e12:.3f} TFLOP "
                  f"({f['attention_flops'] / 1e12:.3f} of it attention, which FlopCounterMode "
                  f"{'counts' if f['counter_saw_sdpa'] else 'misses on CPU and is added'})."]
        p = result.get("peaks", {})
        if p:
            lines.append(f"Measured peaks: matmul bf16 {p['matmul_bf16_gflops']:.0f}, fp32 {p['matmul_fp32_gflops']:.0f} "
                         f"GFLOP/s; 3×3 conv bf16 {p['conv3x3_bf16_gflops']:.0f}, fp32 {p['conv3x3_fp32_gflops']:.0f} GFLOP/s.")
        plain, ours = f["total_flops"], f.get("gouache_flops")
        if ours is not None and ours < plain:
            lines.append(f"gouache computes CFG's shared first layers for one image: {ours / 1e12:.3f} TFLOP per step "
                         f"({1 - ours / plain:.1%} fewer). The rates below are each side's own FLOPs over its UNet time.")
        for r in rows:
            if r["exact"] and r["steps"] == cfg["steps"]:
                flops = ours if (ours is not None and r["side"].startswith("gouache")) else plain
                achieved = flops / r["unet_s_per_step"] / 1e9
                if r["unet_batch_sizes"] != [2]:
                    continue
                lines.append(f"- {r['about']}: {achieved:.0f} GFLOP/s in the UNet")
    q = result.get("quality")
    if q:
        lines += ["", "Judged adherence on gouache-tiny (colour, shape and background all right; 20 steps DPM++ 2M, "
                  "CFG 5, unless the side says otherwise):", "",
                  "| side | seen | held-out | seen Δ | held-out Δ |", "|---|---:|---:|---:|---:|"]
        ref = q.get("gouache")
        for name, scores in q.items():
            seen, held = scores["seen"]["all_three"], scores["held_out"]["all_three"]
            d = (f"{100 * (seen - ref['seen']['all_three']):+.1f} | {100 * (held - ref['held_out']['all_three']):+.1f}"
                 if ref else " | ")
            lines.append(f"| {SIDES[name].about} | {100 * seen:.1f} % | {100 * held:.1f} % | {d} |")
    return "\n".join(lines) + "\n"


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="gouache bench", description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=("sd15",), help="benchmark this architecture with random weights instead of --model")
    p.add_argument("--model", help="model name or path (default: the built-in gouache-tiny)")
    p.add_argument("--sides", default=",".join(DEFAULT_SIDES),
                   help=f"comma-separated, the first is the baseline; choices: {', '.join(SIDES)} (default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="width and height (default: the model's: 512 for sd15)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    p.add_argument("--images", type=int, default=1, help="timed images per side (default 1)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per side (default: all cores)")
    p.add_argument("--flops", action="store_true", help="also count the UNet's FLOPs and measure the machine's peaks")
    p.add_argument("--quality", type=int, default=0, metavar="N",
                   help="also judge N seen + N held-out gouache-tiny images per gouache side (the issue's figure: 64)")
    p.add_argument("--cache", default=None, help="where --arch builds its random-weight model (default: $GOUACHE_HOME/bench)")
    p.add_argument("--out", help="write the results as JSON here and as Markdown next to it (.md)")
    p.add_argument("--cfg", type=float, default=None, help="CFG scale (default: 7.5; 5 for gouache-tiny)")
    p.add_argument("--prompt", default=None, help="the prompt (default: a shapes caption for gouache-tiny, else a scene)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    return p


def _check(args, names: list[str]) -> None:
    """Every option, before the minutes of work."""
    for name in names:
        side(name)
    if args.images < 1 or args.steps < 1 or args.threads < 1 or args.quality < 0:
        raise InvalidArgument("--images, --steps and --threads must be at least 1, --quality at least 0")
    if args.out:
        from gouache.files import writable_folder

        if not args.out.endswith(".json"):
            raise InvalidArgument(f"--out must name a .json file (the Markdown goes next to it), got {args.out!r}")
        writable_folder(Path(args.out).parent)


def _model(args, names: list[str]) -> str:
    """Fills in ``args.folder`` (the diffusers folder the stock sides load), ``args.size``,
    ``args.prompt`` and ``args.cfg``; returns the model's label."""
    from gouache.models.home import gouache_home

    if args.arch:
        cache = Path(args.cache) if args.cache else gouache_home() / "bench"
        args.folder = build_random_sd15(cache / "sd15-random")
        label = "SD 1.5 architecture, random weights"
        args.size = args.size or 512
    else:
        needs_folder = any(side(n).engine != "gouache" for n in names)
        args.folder = model_folder(args.model) if needs_folder else None
        label = args.model or "gouache-tiny"
        if args.size is None:
            from gouache.pipelines.model import load_model

            args.size = load_model(args.model, dtype="fp32").native_size
    if args.size % 8:
        raise InvalidArgument(f"--size must be a multiple of 8, got {args.size}")
    args.prompt = args.prompt or (PROMPT if args.arch or args.model else TINY_PROMPT)
    args.cfg = args.cfg if args.cfg is not None else (7.5 if args.arch or args.model else 5.0)
    return label


def run(args) -> int:
    import torch

    if args.worker:
        torch.set_num_threads(args.threads)
        folder = Path(args.folder) if args.folder else None
        result = run_side(args.worker, folder, args.model, args.size, args.steps, args.images, args.prompt, args.cfg)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    names = [s.strip() for s in args.sides.split(",") if s.strip()]
    _check(args, names)
    label = _model(args, names)
    rows = [_spawn(args, name) for name in names]
    import diffusers

    from gouache.speed.hardware import describe

    result = {"date": datetime.date.today().isoformat(), "machine": describe(), "torch": torch.__version__,
              "diffusers": diffusers.__version__,
              "config": {"model": label, "size": args.size, "steps": args.steps, "threads": args.threads,
                         "images": args.images, "cfg": args.cfg, "sides": names},
              "sides": rows}
    if args.flops and args.folder:
        torch.set_num_threads(args.threads)
        result["flops"] = count_flops(Path(args.folder), args.size)
        result["peaks"] = measure_peaks()
    if args.quality:
        torch.set_num_threads(args.threads)
        result["quality"] = quality(names, args.quality)
    md = markdown(result)
    print()
    print(md)
    if args.out:
        write_results(Path(args.out), result, md)
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except InvalidArgument as e:
        print(f"gouache: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
