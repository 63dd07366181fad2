"""Stock diffusers against gouache's default txt2img path, side by side, on SD 1.5 with random weights.

Speed does not depend on the weights' values, so the benchmark builds SD 1.5's exact UNet, VAE and
text encoder from the configs gouache ships (``src/gouache/models/configs/sd15``) with random
initialisation, saves them once as a diffusers folder under ``benchmarks/.cache/sd15-random``, and
loads that same folder on both sides:

- **stock**: ``diffusers.StableDiffusionPipeline`` (fp32), ``DPMSolverMultistepScheduler`` (DPM++ 2M),
  guidance 7.5, batch 1, a fixed generator;
- **gouache**: ``load_model(folder)`` + ``txt2img(model, GenerationRequest(..., sampler="DPM++ 2M"))``.

Each side runs in its own subprocess (so peak RSS is its own) with ``torch.set_num_threads(threads)``.
Per side it reports seconds per image, per UNet step (time inside ``unet.forward``, divided by the
steps), per VAE decode, per text-encoder call, and peak RSS; then the ratio gouache / stock. A third
subprocess counts the UNet's FLOPs per CFG step (one forward at batch 2) with ``FlopCounterMode``
and, separately, the attention FLOPs (``4·B·heads·Lq·Lk·head_dim`` per attention call), because
the counter does not see CPU SDPA (``aten._scaled_dot_product_flash_attention_for_cpu``).

    python benchmarks/sd15.py --quick                       # smoke run: 256x256, 4 steps
    python benchmarks/sd15.py --size 512 --steps 20 --threads 2 --out benchmarks/results/sd15-2026-11-22.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIGS = REPO / "src" / "gouache" / "models" / "configs" / "sd15"
DEFAULT_CACHE = HERE / ".cache" / "sd15-random"
PROMPT = "a watercolour painting of a lighthouse on a cliff at sunset, detailed, soft light"
CFG = 7.5


# --- the shared random-weight model ----------------------------------------------------------------


def build_random_sd15(folder: Path) -> Path:
    """Save SD 1.5 with random weights, from gouache's shipped configs, as a diffusers folder (once)."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from gouache.models.clip_tokenizer import EOS, load_clip_tokenizer

    torch.manual_seed(0)
    print(f"building SD 1.5 with random weights from {CONFIGS} into {folder} (once) ...", flush=True)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / "text_encoder", local_files_only=True))
    scheduler = PNDMScheduler.from_pretrained(CONFIGS, subfolder="scheduler", local_files_only=True)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(pad_token=EOS), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    tmp = folder.with_name(folder.name + ".partial")
    pipe.save_pretrained(tmp)
    tmp.rename(folder)  # only a complete folder counts as the cache
    return folder


# --- timing hooks ---------------------------------------------------------------------------------


class Timer:
    """Seconds spent inside a module's forward (or a wrapped method), and how often it ran."""

    def __init__(self):
        self.seconds, self.calls, self.batch_sizes, self._t0 = 0.0, 0, [], None

    def attach(self, module) -> None:
        def pre(mod, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()), None)
            self.batch_sizes.append(int(x.shape[0]) if hasattr(x, "shape") else None)
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


def instrument(unet, vae, text_encoder) -> dict[str, Timer]:
    timers = {"unet": Timer(), "vae_decode": Timer(), "text_encoder": Timer()}
    timers["unet"].attach(unet)
    timers["text_encoder"].attach(text_encoder)
    vae.decode = timers["vae_decode"].wrap(vae.decode)  # both sides call ``vae.decode`` on the instance
    return timers


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- the two sides (each in its own process) ------------------------------------------------------


def run_stock(folder: Path, size: int, steps: int, warmup: bool) -> dict:
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t0

    def generate(n: int) -> None:
        pipe(PROMPT, num_inference_steps=n, guidance_scale=CFG, height=size, width=size,
             num_images_per_prompt=1, generator=torch.Generator("cpu").manual_seed(0))

    if warmup:
        generate(1)
    timers = instrument(pipe.unet, pipe.vae, pipe.text_encoder)
    t0 = time.perf_counter()
    generate(steps)
    total_s = time.perf_counter() - t0
    return report("stock", load_s, total_s, steps, timers, repr(pipe.unet.attn_processors.popitem()[1]))


def run_gouache(folder: Path, size: int, steps: int, warmup: bool) -> dict:
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img

    t0 = time.perf_counter()
    model = load_model(str(folder))
    load_s = time.perf_counter() - t0
    pipe = model.pipeline

    def generate(n: int) -> None:
        txt2img(model, GenerationRequest(PROMPT, steps=n, sampler="DPM++ 2M", cfg_scale=CFG, width=size,
                                         height=size, seed=0))

    if warmup:
        generate(1)
    timers = instrument(pipe.unet, pipe.vae, pipe.text_encoder)
    t0 = time.perf_counter()
    generate(steps)
    total_s = time.perf_counter() - t0
    return report("gouache", load_s, total_s, steps, timers, repr(pipe.unet.attn_processors.popitem()[1]))


def report(side: str, load_s: float, total_s: float, steps: int, timers: dict[str, Timer], attn: str) -> dict:
    import torch

    unet = timers["unet"]
    return {
        "side": side,
        "load_s": load_s,
        "total_s": total_s,
        "unet_s": unet.seconds,
        "unet_calls": unet.calls,
        "unet_batch_sizes": sorted(set(unet.batch_sizes)),
        "unet_s_per_step": unet.seconds / steps,
        "unet_s_per_call": unet.seconds / max(unet.calls, 1),
        "vae_decode_s": timers["vae_decode"].seconds,
        "vae_decode_calls": timers["vae_decode"].calls,
        "text_encoder_s": timers["text_encoder"].seconds,
        "text_encoder_calls": timers["text_encoder"].calls,
        "other_s": total_s - unet.seconds - timers["vae_decode"].seconds - timers["text_encoder"].seconds,
        "peak_rss_mib": peak_rss_mib(),
        "loadavg_1min_after": os.getloadavg()[0],  # above --threads: something else shared the CPU
        "threads": torch.get_num_threads(),
        "attn_processor": attn.split(" object")[0].lstrip("<"),
    }


# --- FLOPs per step -------------------------------------------------------------------------------


def count_flops(folder: Path, size: int) -> dict:
    """FLOPs of one UNet forward at batch 2 (CFG's uncond + cond), counted and computed."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention
    from torch.utils.flop_counter import FlopCounterMode

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True).eval()
    attn_flops = []

    def hook(mod, args, kwargs, out):
        hidden = args[0] if args else kwargs["hidden_states"]
        context = kwargs.get("encoder_hidden_states")
        if context is None and len(args) > 1:
            context = args[1]
        if hidden.ndim == 4:  # (B, C, H, W) as the VAE's mid-block attention takes it
            hidden = hidden.flatten(2).transpose(1, 2)
        b, lq = hidden.shape[:2]
        lk = (context if context is not None else hidden).shape[1]
        head_dim = mod.inner_dim // mod.heads
        attn_flops.append(4 * b * mod.heads * lq * lk * head_dim)  # QKᵀ and (softmax)·V, 2 FLOPs per MAC

    for m in unet.modules():
        if isinstance(m, Attention):
            m.register_forward_hook(hook, with_kwargs=True)
    latent = size // 8
    x = torch.randn(2, unet.config.in_channels, latent, latent)
    context = torch.randn(2, 77, unet.config.cross_attention_dim)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(x, torch.tensor([500, 500]), encoder_hidden_states=context)
    by_op = {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}
    counted = counter.get_total_flops()
    sdpa_counted = sum(v for k, v in by_op.items() if "scaled_dot_product" in k)
    attention = sum(attn_flops)
    return {
        "batch": 2,
        "latent": latent,
        "counted_flops": counted,
        "counter_saw_sdpa": sdpa_counted > 0,
        "attention_flops": attention,
        "attention_calls": len(attn_flops),
        # when the counter missed SDPA, add the computed attention to what it counted
        "total_flops": counted if sdpa_counted else counted + attention,
        "by_op": by_op,
    }


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(args.cache)
    if args.worker == "flops":
        result = count_flops(folder, args.size)
    else:
        result = (run_stock if args.worker == "stock" else run_gouache)(folder, args.size, args.steps, args.warmup)
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: run the sides, compare, write ----------------------------------------------------


def spawn(args, side: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--size", str(args.size),
           "--steps", str(args.steps), "--threads", str(args.threads), "--cache", str(args.cache)]
    cmd += ["--warmup"] if args.warmup else ["--no-warmup"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           # hashes and the built-in model's folder go here, not into the user's ~/.gouache
           "GOUACHE_HOME": str(Path(args.cache).parent / "gouache-home"), "TQDM_DISABLE": "1"}
    print(f"running {side} ...", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the {side} subprocess failed (exit code {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        name = platform.processor() or "?"
    return f"{name}, {os.cpu_count()} CPU cores"


ROWS = [  # (label, key, format)
    ("total s / image", "total_s", "{:.2f}"),
    ("UNet s / step", "unet_s_per_step", "{:.3f}"),
    ("UNet calls (batch)", None, None),
    ("UNet s / call", "unet_s_per_call", "{:.3f}"),
    ("VAE decode s", "vae_decode_s", "{:.2f}"),
    ("text encoder s (all calls)", "text_encoder_s", "{:.3f}"),
    ("other s", "other_s", "{:.2f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
    ("load s (not in total)", "load_s", "{:.1f}"),
    ("1-min load average after", "loadavg_1min_after", "{:.2f}"),
]


def table(stock: dict, gouache: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, key, fmt in ROWS:
        if key is None:
            cells = [f"{r['unet_calls']} ({','.join(map(str, r['unet_batch_sizes']))})" for r in (stock, gouache)]
            rows.append((label, *cells, ""))
            continue
        s, g = stock[key], gouache[key]
        ratio = f"{g / s:.2f}x" if s else "-"
        rows.append((label, fmt.format(s), fmt.format(g), ratio))
    return rows


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# SD 1.5 (random weights): stock diffusers vs gouache, {result['date']}", "",
             f"{cfg['size']}x{cfg['size']}, {cfg['steps']} steps DPM++ 2M, CFG {CFG}, batch 1, fp32, "
             f"{cfg['threads']} threads, warm-up {'on' if cfg['warmup'] else 'off'}; {result['machine']}; torch {result['torch']}, diffusers {result['diffusers']}",
             "", "| | stock | gouache | gouache / stock |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table(result["stock"], result["gouache"])]
    f = result["flops"]
    lines += ["", f"UNet FLOPs per CFG step (batch 2, {f['latent']}x{f['latent']} latents): "
              f"{f['counted_flops'] / 1e12:.3f} TFLOP counted by FlopCounterMode"
              f"{'' if f['counter_saw_sdpa'] else ' (without attention: CPU SDPA is not counted)'}, "
              f"{f['attention_flops'] / 1e12:.3f} TFLOP attention ({f['attention_calls']} calls), "
              f"{f['total_flops'] / 1e12:.3f} TFLOP in all."]
    for side in ("stock", "gouache"):
        r = result[side]
        lines.append(f"- {side}: {f['total_flops'] / r['unet_s_per_step'] / 1e9:.0f} GFLOP/s in the UNet; "
                     f"attention processor {r['attn_processor']}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="width and height in pixels (default 512)")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each subprocess (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: --size 256 --steps 4")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="run one untimed 1-step image first, so first-call costs stay out (default on)")
    parser.add_argument("--out", help="write the results as JSON here, and a Markdown table next to it (.md)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="the random-weight SD 1.5 diffusers folder")
    parser.add_argument("--worker", choices=("stock", "gouache", "flops"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.steps = 256, 4
    if args.size % 8:
        parser.error(f"`--size` must be a multiple of 8, got {args.size}")
    if args.worker:
        return worker(args)

    build_random_sd15(Path(args.cache))
    stock, gouache, flops = (spawn(args, side) for side in ("stock", "gouache", "flops"))
    import diffusers
    import torch

    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "torch": torch.__version__,
              "diffusers": diffusers.__version__,
              "config": {"size": args.size, "steps": args.steps, "threads": args.threads, "cfg": CFG, "warmup": args.warmup,
                         "sampler": "DPM++ 2M", "prompt": PROMPT},
              "stock": stock, "gouache": gouache, "flops": flops}
    md = markdown(result)
    print()
    print(md)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(md)
        print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
