"""GPU speed: gouache's CUDA path against stock diffusers, side by side, in one run within a time budget.

Models: the SD 1.5 and SDXL architectures (gouache's shipped configs, ``src/gouache/models/configs``)
with random weights built on the device, so nothing has to be carried; speed does not depend on
the weights. The tokenizer is CLIP's (built from the openai-clip package's vocabulary).

Cases: SD 1.5 512², 20 steps DPM++ 2M, CFG 7.5, batch 1 and batch 8; SDXL 1024², 30 steps, batch 1.

Sides (each timed in this run, after a warm-up run; same components, fp16):

- ``diffusers``: stock ``StableDiffusionPipeline``/``StableDiffusionXLPipeline``, SDPA (``AttnProcessor2_0``),
  ``DPMSolverMultistepScheduler``;
- ``diffusers-compile``: the same with ``torch.compile(unet, mode=--compile-mode)``, channels-last and
  fused QKV (diffusers' own ``fuse_qkv_projections``), as diffusers' speed guide does;
- ``gouache``: ``txt2img`` on gouache's CUDA default path (:mod:`gouache.speed.cuda`);
- ``gouache-graphs``: the same with ``SpeedSettings(cuda_graphs=True)`` (the UNet's steps replayed from
  CUDA graphs, :class:`gouache.speed.cuda.GraphedUNet`; not yet the default: its first GPU run is this one);
- ``gouache-compile``: the same with ``SpeedSettings(compile=True, compile_mode=--compile-mode)``;
- ``gouache-tome``, ``gouache-deepcache``, ``gouache-cfgtrunc``: the approximations (ToMe 0.5,
  DeepCache interval 3, CFG on the first half of the steps), each alone.

Each row: it/s (the denoising loop, steady state: CUDA events at each step's callback, no
synchronisation added), s/image and images/s (the whole call: text encoding, loop, decode, PIL
images), peak VRAM (``torch.cuda.max_memory_allocated`` over the timed runs, weights included),
compile time (the warm-up run's extra time over a timed run), and for gouache the host-device
synchronisations PyTorch reports in one generation (``torch.cuda.set_sync_debug_mode("warn")``).

The sides run in priority order (the issue's bars first) and ``--budget-s`` bounds the whole run:
a side whose estimated cost does not fit in what is left is skipped with a note, never killed.

    python benchmarks/gpu.py --out benchmarks/results/gpu-2026-11-20.json --budget-s 420
    python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke.json     # tiny models, 2 steps, CPU (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, 8k"
NEGATIVE = "blurry, low quality"


@dataclass(frozen=True)
class Case:
    name: str
    arch: str  # sd15 or sdxl
    size: int
    steps: int
    batch: int
    cfg: float = 7.5


CASES = {
    "sd15-b1": Case("sd15-b1", "sd15", 512, 20, 1),
    "sd15-b8": Case("sd15-b8", "sd15", 512, 20, 8),
    "sdxl-b1": Case("sdxl-b1", "sdxl", 1024, 30, 1),
}
SMOKE_CASES = {
    "sd15-b1": Case("sd15-b1", "sd15", 64, 3, 1),
    "sd15-b8": Case("sd15-b8", "sd15", 64, 3, 2),
    "sdxl-b1": Case("sdxl-b1", "sdxl", 64, 3, 1),
}
SIDES = ("diffusers", "diffusers-compile", "gouache", "gouache-graphs", "gouache-compile", "gouache-tome",
         "gouache-deepcache", "gouache-cfgtrunc")
APPROXIMATIONS = {"gouache-tome": {"tome_ratio": 0.5}, "gouache-deepcache": {"deepcache_interval": 3},
                  "gouache-cfgtrunc": {"cfg_truncation": 0.5}}
# (case, side) in the order they run: the bars first
PLAN = (
    ("sd15-b1", "diffusers"), ("sd15-b1", "gouache"), ("sd15-b1", "gouache-graphs"),
    ("sd15-b8", "diffusers"), ("sd15-b8", "gouache"), ("sd15-b8", "gouache-graphs"),
    ("sdxl-b1", "diffusers"), ("sdxl-b1", "gouache"), ("sdxl-b1", "gouache-graphs"),
    ("sd15-b1", "diffusers-compile"), ("sd15-b1", "gouache-compile"),
    ("sdxl-b1", "gouache-compile"),
    ("sd15-b1", "gouache-tome"), ("sd15-b1", "gouache-deepcache"), ("sd15-b1", "gouache-cfgtrunc"),
    ("sdxl-b1", "diffusers-compile"),
    ("sd15-b8", "gouache-compile"), ("sd15-b8", "diffusers-compile"),
)
# a first guess of a compile's cost, before one was measured in this run (H200, inductor, 16 cores)
COMPILE_GUESS_S = {"sd15": 90.0, "sdxl": 150.0}
BUILD_GUESS_S = {"sd15": 15.0, "sdxl": 40.0}


# -- the models ---------------------------------------------------------------------------------------


def tiny_overrides(arch: str) -> dict:
    """Config changes that make an architecture tiny (the smoke run), keeping its layout."""
    unet = {"block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 4, "norm_num_groups": 8,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "sample_size": 8,
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32}
    text = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
            "projection_dim": 32}
    if arch == "sdxl":
        unet.update({"cross_attention_dim": 64, "transformer_layers_per_block": 1, "addition_time_embed_dim": 8,
                     "projection_class_embeddings_input_dim": 6 * 8 + 32, "attention_head_dim": [2, 4]})
    vae = {"block_out_channels": [16, 32], "norm_num_groups": 8, "layers_per_block": 1, "sample_size": 64,
           "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2}
    return {"unet": unet, "vae": vae, "text_encoder": text, "text_encoder_2": text}


def build_components(arch: str, device: str, dtype: torch.dtype, smoke: bool) -> dict:
    """The architecture's components with random weights, made on ``device`` in ``dtype``."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from gouache.models.clip_tokenizer import load_clip_tokenizer
    from gouache.models.detect import ARCHITECTURES

    spec = ARCHITECTURES[arch]
    folder = spec.config_path()
    small = tiny_overrides(arch) if smoke else {}

    def config(name: str) -> dict:
        return {**json.loads((folder / name / "config.json").read_text()), **small.get(name, {})}

    torch.manual_seed(0)
    out = {}
    with torch.device(device):
        out["unet"] = UNet2DConditionModel.from_config(config("unet"))
        out["vae"] = AutoencoderKL.from_config(config("vae"))
        encoders = {"text_encoder": CLIPTextModel}
        if arch == "sdxl":
            encoders = {"text_encoder": CLIPTextModel, "text_encoder_2": CLIPTextModelWithProjection}
        for name, cls in encoders.items():
            cfg = {k: v for k, v in config(name).items() if not k.startswith("_") and k != "architectures"}
            out[name] = cls(CLIPTextConfig(**cfg))
    for name in ("unet", "vae", *encoders):
        torch.nn.Module.to(out[name], dtype).eval().requires_grad_(False)
    for name, pad in spec.pads.items():
        out[name] = load_clip_tokenizer(pad_token=pad)
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    out["scheduler"] = DPMSolverMultistepScheduler.from_config(scheduler_config)
    return out


def stock_pipeline(arch: str, components: dict, compiled=None):
    """diffusers' own pipeline over the components, as stock as it comes: SDPA, contiguous tensors,
    the VAE in the model's dtype (the SDXL pipeline upcasts it for the decode itself)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    reset_modules(components)
    for name in ("unet", "vae"):
        components[name].set_attn_processor(AttnProcessor2_0())
    parts = {k: v for k, v in components.items()}
    if compiled is not None:
        parts["unet"] = compiled
    if arch == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts, force_zeros_for_empty_prompt=True)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reset_modules(components: dict) -> None:
    """Undo what an earlier side did to the shared modules (processors are set by each side)."""
    unet, vae = components["unet"], components["vae"]
    unet._compiled_call_impl = None
    if getattr(unet, "fused_projections", False) or any(getattr(m, "fused_projections", False) for m in unet.modules()):
        unet.unfuse_qkv_projections()
    dtype = unet.dtype
    for module in (unet, vae):
        module.to(memory_format=torch.contiguous_format)
    torch.nn.Module.to(vae, dtype)


def gouache_model(arch: str, components: dict, device: str, speed):
    from gouache.adapters.embeddings import EmbeddingLibrary
    from gouache.pipelines.model import LoadedModel
    from gouache.speed import apply_speed

    reset_modules(components)
    parts = {k: v for k, v in components.items()}
    pipe = stock_pipeline(arch, parts)
    model = LoadedModel(pipe, f"{arch}-random", "", "0" * 10, components["unet"].dtype, device)
    model.embeddings = EmbeddingLibrary.scan()  # $GOUACHE_HOME is an empty temporary folder
    model.speed = apply_speed(model, speed)
    return model


# -- timing ------------------------------------------------------------------------------------------


class StepClock:
    """CUDA events recorded at each step's callback (no synchronisation), read after the call."""

    def __init__(self, cuda: bool):
        self.cuda, self.marks = cuda, []

    def tick(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def it_s(self) -> float | None:
        if len(self.marks) < 3:
            return None
        first, last = self.marks[1], self.marks[-1]  # from the end of the second step: steady state
        seconds = first.elapsed_time(last) / 1000 if self.cuda else last - first
        return (len(self.marks) - 2) / seconds if seconds > 0 else None


def sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


@dataclass
class Runner:
    """One side's generation as a function of a StepClock; ``count_syncs`` runs it once under the
    sync detector (gouache's sides)."""

    run: object
    count_syncs: bool = False
    extra: dict = field(default_factory=dict)


def diffusers_runner(arch: str, case: Case, components: dict, compile_mode: str | None) -> Runner:
    compiled = None
    extra = {}
    if compile_mode is not None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet = components["unet"]
        reset_modules(components)
        unet.set_attn_processor(AttnProcessor2_0())
        unet.fuse_qkv_projections()
        unet.to(memory_format=torch.channels_last)
        components["vae"].to(memory_format=torch.channels_last)
        compiled = torch.compile(unet, mode=compile_mode)
        extra["compile_mode"] = compile_mode
    pipe = stock_pipeline(arch, components, compiled)
    if compile_mode is not None:  # stock_pipeline reset the modules: set them up again
        unet = components["unet"]
        unet.fuse_qkv_projections()
        unet.to(memory_format=torch.channels_last)
        components["vae"].to(memory_format=torch.channels_last)
    size = case.size

    def run(clock: StepClock):
        def on_step(pipe, i, t, kwargs):
            clock.tick()
            return kwargs

        generator = [torch.Generator("cpu").manual_seed(1 + i) for i in range(case.batch)]
        return pipe(PROMPT, negative_prompt=NEGATIVE, height=size, width=size, num_inference_steps=case.steps,
                    guidance_scale=case.cfg, num_images_per_prompt=case.batch, generator=generator,
                    callback_on_step_end=on_step).images

    return Runner(run, extra=extra)


def gouache_runner(arch: str, case: Case, components: dict, device: str, side: str, compile_mode: str) -> Runner:
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img
    from gouache.speed import SpeedSettings

    compiled = side == "gouache-compile"
    speed = SpeedSettings(dtype="fp16" if device != "cpu" else "fp32", compile=compiled,
                          compile_mode=compile_mode if compiled else "default", cuda_graphs=side == "gouache-graphs")
    model = gouache_model(arch, components, device, speed)
    request = GenerationRequest(PROMPT, negative_prompt=NEGATIVE, steps=case.steps, cfg_scale=case.cfg,
                                sampler="DPM++ 2M", seed=1, width=case.size, height=case.size,
                                batch_size=case.batch, **APPROXIMATIONS.get(side, {}))

    def run(clock: StepClock):
        return txt2img(model, request, progress=lambda i, n: clock.tick())

    extra = {"batched": model.speed.get("batched"), "vae_dtype": model.speed.get("vae_dtype", "fp16"),
             "cuda_graphs": model.speed.get("cuda_graphs", False)}
    if compiled:
        extra["compile_mode"] = compile_mode
        extra["compile_s_by_shape"] = model.speed["compile"]["compile_s"]
    return Runner(run, count_syncs=True, extra=extra)


def host_syncs(runner: Runner) -> int | None:
    """The synchronisations PyTorch reports in one generation (CUDA only)."""
    if not torch.cuda.is_available():
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            runner.run(StepClock(True))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def measure(runner: Runner, case: Case, cuda: bool, repeats: int) -> dict:
    """Warm-up run (the compile, when compiled), then ``repeats`` timed runs; medians."""
    from gouache.speed.cuda import peak_vram, reset_peak_vram

    sync(cuda)
    t0 = time.perf_counter()
    runner.run(StepClock(cuda))
    sync(cuda)
    first = time.perf_counter() - t0
    reset_peak_vram()
    walls, rates = [], []
    for _ in range(repeats):
        clock = StepClock(cuda)
        sync(cuda)
        t0 = time.perf_counter()
        images = runner.run(clock)
        sync(cuda)
        walls.append(time.perf_counter() - t0)
        rates.append(clock.it_s())
    assert len(images) == case.batch, f"{len(images)} images for a batch of {case.batch}"
    wall = statistics.median(walls)
    rates = [r for r in rates if r is not None]
    row = {"it_s": round(statistics.median(rates), 2) if rates else None, "s_per_image": round(wall / case.batch, 4),
           "images_s": round(case.batch / wall, 3), "s_per_call": round(wall, 4), "runs": repeats,
           "first_call_s": round(first, 2), "compile_s": None,
           "peak_vram_gib": (peak_vram() or {}).get("peak_allocated_gib")}
    if "compile_mode" in runner.extra:
        row["compile_s"] = round(max(first - wall, 0.0), 1)
    if runner.count_syncs:
        row["host_syncs_per_generation"] = host_syncs(runner)
    return {**row, **runner.extra}


# -- the run -----------------------------------------------------------------------------------------


def machine(device: str) -> dict:
    import diffusers
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__, "device": device,
            "gpu": None, "driver": None, "cpu_cores": os.cpu_count()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
            info["driver"] = out.splitlines()[0] if out else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def run_plan(args, cases: dict, plan, log) -> list[dict]:
    cuda = args.device.startswith("cuda")
    start, rows, built, cost = time.perf_counter(), [], {}, {}
    dtype = torch.float16 if cuda else torch.float32
    for case_name, side in plan:
        case = cases[case_name]
        left = args.budget_s - (time.perf_counter() - start)
        row = {"case": case_name, "side": side, "arch": case.arch, "size": case.size, "steps": case.steps,
               "batch": case.batch}
        compiled = side.endswith("-compile")
        if (compiled or side == "gouache-graphs") and not cuda:
            rows.append({**row, "skipped": "torch.compile and CUDA graphs are measured on CUDA only"})
            continue
        eager = cost.get((case_name, "eager"), 3.0 if not cuda else 8.0 * case.steps / 20 * case.batch)
        need = (args.repeats + 2) * eager + (0 if case.arch in built else BUILD_GUESS_S[case.arch])
        if compiled:
            need += cost.get((case.arch, "compile"), COMPILE_GUESS_S[case.arch])
        if need > left:
            rows.append({**row, "skipped": f"budget: needs about {need:.0f} s, {left:.0f} s left"})
            log(f"skip {case_name} {side}: needs about {need:.0f} s, {left:.0f} s left")
            continue
        t0 = time.perf_counter()
        try:
            if case.arch not in built:
                built[case.arch] = build_components(case.arch, args.device, dtype, args.smoke)
                log(f"built {case.arch} in {time.perf_counter() - t0:.1f} s")
            components = built[case.arch]
            if side.startswith("diffusers"):
                runner = diffusers_runner(case.arch, case, components, args.compile_mode if compiled else None)
            else:
                runner = gouache_runner(case.arch, case, components, args.device, side, args.compile_mode)
            row.update(measure(runner, case, cuda, args.repeats))
            if not compiled:
                cost[(case_name, "eager")] = row["s_per_call"]
            elif row.get("compile_s") is not None:
                cost[(case.arch, "compile")] = row["compile_s"]
        except Exception as exc:  # one side's failure is a row of the table, not the end of the run
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            traceback.print_exc()
        finally:
            if cuda:
                torch.cuda.empty_cache()
        row["side_s"] = round(time.perf_counter() - t0, 1)
        log(json.dumps(row))
        rows.append(row)
    return rows


def ratios(rows: list[dict]) -> dict:
    """The issue's bars as ratios of this run's rows (None where a side is missing)."""
    by = {(r["case"], r["side"]): r for r in rows if "it_s" in r}

    def ratio(case, a, b, key="images_s"):
        ra, rb = by.get((case, a)), by.get((case, b))
        if not ra or not rb or not ra.get(key) or not rb.get(key):
            return None
        return round(ra[key] / rb[key], 3)

    out = {
        "sd15-b1 gouache / diffusers": ratio("sd15-b1", "gouache", "diffusers"),
        "sd15-b1 gouache-graphs / diffusers": ratio("sd15-b1", "gouache-graphs", "diffusers"),
        "sd15-b8 gouache-graphs / diffusers (images/s)": ratio("sd15-b8", "gouache-graphs", "diffusers"),
        "sdxl-b1 gouache-graphs / diffusers": ratio("sdxl-b1", "gouache-graphs", "diffusers"),
        "sd15-b1 gouache-compile / diffusers": ratio("sd15-b1", "gouache-compile", "diffusers"),
        "sd15-b1 gouache-compile / diffusers-compile": ratio("sd15-b1", "gouache-compile", "diffusers-compile"),
        "sd15-b8 gouache / diffusers (images/s)": ratio("sd15-b8", "gouache", "diffusers"),
        "sdxl-b1 gouache / diffusers": ratio("sdxl-b1", "gouache", "diffusers"),
    }
    for side in ("gouache", "gouache-graphs", "gouache-compile"):
        r = by.get(("sd15-b1", side))
        out[f"sd15-b1 {side} it/s"] = r.get("it_s") if r else None
    r = by.get(("sdxl-b1", "gouache-compile"))
    out["sdxl-b1 gouache-compile it/s"] = r.get("it_s") if r else None
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# benchmarks/gpu.py: {m.get('gpu') or m['device']}", "",
             f"torch {m['torch']} (CUDA {m['cuda']}), diffusers {m['diffusers']}, transformers {m['transformers']}, "
             f"driver {m.get('driver')}; budget {result['budget_s']} s, used {result['wall_s']} s; "
             f"{'smoke run (tiny models)' if result['smoke'] else 'random weights, fp16'}", "",
             "| case | side | it/s | s/image | images/s | peak VRAM GiB | compile s | syncs/gen | note |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    def cell(value) -> str:
        return "" if value is None else str(value)

    for r in result["rows"]:
        note = r.get("skipped") or r.get("error") or ""
        cells = [r["case"], r["side"], *(cell(r.get(k)) for k in ("it_s", "s_per_image", "images_s", "peak_vram_gib",
                                                                  "compile_s", "host_syncs_per_generation")), note]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {cell(v)} |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def write_results(result: dict, out: Path) -> None:
    """The JSON at ``out`` and the Markdown table beside it, each written whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((out, json.dumps(result, indent=2)), (out.with_suffix(".md"), markdown(result))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="results JSON (a Markdown table is written next to it)")
    parser.add_argument("--budget-s", type=float, default=420, help="the whole run's time budget (default 420)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="torch.compile's mode for both compiled sides (default: max-autotune-no-cudagraphs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (default 3)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases (default: all)")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated sides (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 2 steps, small sizes (CI, on CPU)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    cases_wanted, sides_wanted = args.cases.split(","), args.sides.split(",")
    for name in cases_wanted:
        if name not in CASES:
            parser.error(f"unknown case {name!r}; one of {', '.join(CASES)}")
    for name in sides_wanted:
        if name not in SIDES:
            parser.error(f"unknown side {name!r}; one of {', '.join(SIDES)}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists; give another --out or --overwrite")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA GPU")
    os.environ.setdefault("GOUACHE_HOME", tempfile.mkdtemp(prefix="gouache-gpu-bench-"))

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    cases = SMOKE_CASES if args.smoke else CASES
    plan = [(c, s) for c, s in PLAN if c in cases_wanted and s in sides_wanted]
    t0 = time.perf_counter()
    info = machine(args.device)
    log(json.dumps(info))
    rows = run_plan(args, cases, plan, log)
    result = {"machine": info, "budget_s": args.budget_s, "wall_s": round(time.perf_counter() - t0, 1),
              "smoke": args.smoke, "compile_mode": args.compile_mode, "repeats": args.repeats,
              "cases": {k: {"arch": v.arch, "size": v.size, "steps": v.steps, "batch": v.batch, "cfg": v.cfg}
                        for k, v in cases.items()},
              "rows": rows}
    result["ratios"] = ratios(rows)
    write_results(result, out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
