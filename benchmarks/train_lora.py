"""LoRA training speed: gouache's trainer against a plain diffusers + peft loop, side by side.

Both sides train the same LoRA on the built-in gouache-tiny (64x64) with the same data:

- **dataset**: ``--images`` (default 64) images of gouache-tiny's procedural shapes with their
  captions, drawn once with ``gouache.tiny.shapes.write_folder`` and made into a prepared imagefolder
  (``metadata.jsonl``) with ``gouache.data.prepare`` at 64x64, in a temporary folder;
- **gouache**: ``gouache.train.lora.train_lora(LoraTrainConfig(...))``, the function behind
  ``gouache train lora``, on the default base (gouache-tiny), ``targets="attn"``, rank 8 (alpha =
  rank), batch 16, lr 1e-4 with the trainer's only schedule (cosine with linear warm-up), fp32
  (``mixed_precision="no"``), AdamW, gradient clipping at 1.0, no validation prompts, no latent
  caching, no min-SNR, no noise offset, no caption dropout, no flips, no periodic checkpoints
  (``checkpoint_every=0``, ``checkpoint_minutes`` huge: only the one the loop always writes after
  its last step, which is outside the timed window);
- **plain**: a loop written here the way diffusers' ``examples/text_to_image/train_text_to_image_lora.py``
  writes it: ``StableDiffusionPipeline.from_pretrained`` on the gouache-tiny diffusers folder
  (the one ``load_model(None)`` materialises), everything frozen,
  ``unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
  target_modules=["to_k", "to_q", "to_v", "to_out.0"]))``, ``accelerate.Accelerator``, AdamW on the
  LoRA parameters, a ``DataLoader`` (shuffled, no workers) over the same imagefolder with PIL + numpy
  transforms and the tokenizer applied per item, and per step: ``vae.encode`` →
  ``latent_dist.sample()`` × scaling factor, DDPM noise at a random timestep, the CLIP text encoder
  on the batch's token ids, the UNet, epsilon MSE, backward, clip to 1.0, optimizer and schedule
  step. Same batch size, lr, schedule, steps and seed.

**Timing.** Each side runs ``warm-up + N + 1`` optimizer steps in one process and records the time at
which every step *starts* (gouache: entry to ``LoraObjective.loss``, which the loop calls first in
each step, patched in the worker process; plain: the top of its loop). steps/s is
``N / (start of step W+N - start of step W)``: N whole steps after W warm-up steps, each including
everything the loop does per step (data, VAE, text encoder, UNet forward and backward, clipping,
optimizer, schedule, the loss log, progress bar and checkpoint checks). Model loading, LoRA
injection, the warm-up steps (first-call costs: oneDNN primitives, allocator growth), and the last
step with its end-of-run checkpoint, loss plot and file writing are all outside the window. The
same seed is set on both sides; the losses are not expected to match (different LoRA
initialisation and data order, see below), only to be of the same size.

**Differences that remain** (none changes the work of a step by more than a few small array
operations):

- LoRA initialisation: gouache uses peft's default (``init_lora_weights=True``: Kaiming A, zero B),
  the diffusers example ``"gaussian"``. Same shapes and cost.
- Target modules: gouache's ``attn`` lists the full names of every ``attn1``/``attn2``
  ``to_q/to_k/to_v/to_out.0``; the plain side names the suffixes, as the example does. The result
  records how many modules each side wrapped and the trainable parameter count, so it shows
  whether they match (on gouache-tiny they do). gouache's *default* targets are ``transformer``
  (every linear and conv of the transformer blocks), not ``attn``; the benchmark sets ``attn``.
- Data: gouache keeps the decoded images in memory and draws each batch's items at random with
  replacement from the batch index (resumable); the plain side decodes the PNGs on every access and
  shuffles once per epoch (a ``DataLoader``), as the example's ``datasets`` pipeline does, and
  tokenizes per item rather than per batch: about 7 ms per batch of 16 against gouache's 2 ms on the
  2-core development machine, a few percent of a step.
- Weight decay: 0 on both (gouache's loop uses 0; the diffusers example's default is 1e-2, which
  costs the same).
- gouache appends every step's loss to ``loss.jsonl`` and updates its (disabled, non-tty) tqdm bar;
  the plain loop only keeps the loss in a list. Both are part of what each loop does per step.
- The model: gouache loads it with ``load_model(None, speed=SpeedSettings.reference())`` (fp32,
  contiguous, diffusers' SDPA processor ``AttnProcessor2_0``); the plain side with
  ``StableDiffusionPipeline.from_pretrained`` on the same folder (diffusers' default processor, also
  ``AttnProcessor2_0``). Each side's result records the processor.

Each side runs in its own subprocess (so peak RSS is its own) with ``torch.set_num_threads(threads)``
and ``OMP_NUM_THREADS``; the 1-minute load average is recorded after each.

    python benchmarks/train_lora.py --quick                     # smoke run: 10 steps after 2 warm-up steps
    python benchmarks/train_lora.py --steps 60 --threads 2 --out benchmarks/results/train-lora-2026-11-22.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_HOME = HERE / ".cache" / "gouache-home"  # where the built-in model is materialised (git-ignored)
TARGET_SUFFIXES = ["to_k", "to_q", "to_v", "to_out.0"]


# --- the shared inputs ----------------------------------------------------------------------------


def make_dataset(folder: Path, n: int, seed: int) -> Path:
    """``n`` shapes images (64x64) with captions, prepared as an imagefolder in ``folder / "prepared"``."""
    from gouache.data.prepare import PrepareConfig, prepare
    from gouache.tiny.shapes import write_folder

    raw, prepared = folder / "raw", folder / "prepared"
    write_folder(raw, n, seed=seed, resolution=64)
    prepare(PrepareConfig(str(raw), str(prepared), resolution=64, caption="sidecar"), report=lambda line: None)
    return prepared


def builtin_folder() -> Path:
    """The gouache-tiny diffusers folder ``load_model(None)`` loads (materialised on first use)."""
    from gouache.models.builtin import materialize
    from gouache.models.home import models_dir

    return materialize(models_dir("builtin"))


# --- measurement helpers --------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def lora_summary(unet) -> dict:
    from peft.tuners.lora import LoraLayer

    wrapped = sorted(n for n, m in unet.named_modules() if isinstance(m, LoraLayer))
    return {"lora_modules": len(wrapped),
            "trainable_params": sum(p.numel() for p in unet.parameters() if p.requires_grad),
            "attn_processor": type(next(iter(unet.attn_processors.values()))).__name__}


def timing(starts: list[float], warmup: int, steps: int) -> dict:
    """steps/s over steps ``warmup .. warmup+steps-1`` from the start times of every step."""
    if len(starts) < warmup + steps + 1:
        raise RuntimeError(f"recorded {len(starts)} step starts, expected {warmup + steps + 1}")
    seconds = starts[warmup + steps] - starts[warmup]
    per_step = [b - a for a, b in zip(starts[warmup : warmup + steps], starts[warmup + 1 : warmup + steps + 1])]
    return {"timed_steps": steps, "timed_s": seconds, "steps_per_s": steps / seconds, "s_per_step": seconds / steps,
            "s_per_step_min": min(per_step), "s_per_step_max": max(per_step),
            "warmup_s": starts[warmup] - starts[0]}


# --- the two sides (each in its own process) ------------------------------------------------------


def run_gouache(args) -> dict:
    t0 = time.perf_counter()  # setup_s counts from here on both sides, imports included
    import gouache.train.lora as lora
    from gouache.train.lora import LoraTrainConfig, train_lora

    starts: list[float] = []
    objective = {}
    original = lora.LoraObjective.loss

    def timed_loss(self, model, index):  # the loop's first call in every step
        starts.append(time.perf_counter())
        objective["it"] = self
        return original(self, model, index)

    lora.LoraObjective.loss = timed_loss
    total = args.warmup_steps + args.steps + 1
    out = Path(args.work) / "gouache-run"
    cfg = LoraTrainConfig(dataset=Path(args.dataset), out_dir=out, base=None, name="bench", rank=args.rank,
                          targets="attn", steps=total, batch_size=args.batch_size, lr=args.lr, mixed_precision="no",
                          checkpoint_every=0, checkpoint_minutes=1e9, validation_prompts=[], seed=args.seed,
                          overwrite=True)
    train_lora(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    losses = [json.loads(line)["loss"] for line in (out / "loss.jsonl").read_text().splitlines()]
    return {"side": "gouache", **timing(starts, args.warmup_steps, args.steps), "total_s": wall,
            "setup_s": starts[0] - t0, "final_loss": losses[-1],
            "mean_loss_timed": sum(losses[args.warmup_steps : args.warmup_steps + args.steps]) / args.steps,
            **lora_summary(objective["it"].unet), **common()}


class PlainImageFolder:
    """The imagefolder as the diffusers example's ``datasets`` pipeline reads it: decode, resize,
    centre-crop, to [-1, 1], tokenize, on every access (PIL + numpy instead of torchvision)."""

    def __init__(self, folder: Path, resolution: int, tokenizer):
        rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
        self.items = [(folder / r["file_name"], r["text"]) for r in rows]
        self.resolution, self.tokenizer = resolution, tokenizer

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        import numpy as np
        import torch
        from PIL import Image

        path, text = self.items[i]
        with Image.open(path) as im:
            image = im.convert("RGB")
        r = self.resolution
        if image.size != (r, r):  # Resize(shorter side) + CenterCrop
            scale = r / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
            x, y = (image.width - r) // 2, (image.height - r) // 2
            image = image.crop((x, y, x + r, y + r))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0)
        ids = self.tokenizer(text, max_length=self.tokenizer.model_max_length, padding="max_length", truncation=True,
                             return_tensors="pt").input_ids[0]
        return {"pixel_values": pixels, "input_ids": ids}


def run_plain(args) -> dict:
    t0 = time.perf_counter()  # setup_s counts from here on both sides, imports included
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler, StableDiffusionPipeline
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig

    total = args.warmup_steps + args.steps + 1
    accelerator = Accelerator(mixed_precision="no")
    set_seed(args.seed)
    folder = Path(args.model_folder)
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    noise_scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=TARGET_SUFFIXES))
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_layers, lr=args.lr, betas=(0.9, 0.999), weight_decay=0.0, eps=1e-8)
    resolution = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
    dataset = PlainImageFolder(Path(args.dataset), resolution, tokenizer)

    def collate(examples):
        return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]).contiguous().float(),
                "input_ids": torch.stack([e["input_ids"] for e in examples])}

    loader = torch.utils.data.DataLoader(dataset, shuffle=True, collate_fn=collate, batch_size=args.batch_size,
                                         num_workers=0)
    # gouache's only schedule, to keep the two equal: cosine, linear warm-up of min(50, steps // 2)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=min(50, total // 2),
                                 num_training_steps=total)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)

    starts, losses, step = [], [], 0
    while step < total:
        unet.train()
        for batch in loader:
            starts.append(time.perf_counter())
            with accelerator.accumulate(unet):
                # as the example: no no_grad, the frozen VAE and text encoder build no graph anyway
                latents = vae.encode(batch["pixel_values"]).latent_dist.sample()
                latents = latents * vae.config.scaling_factor
                noise = torch.randn_like(latents)
                bsz = latents.shape[0]
                timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (bsz,),
                                          device=latents.device).long()
                noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
                encoder_hidden_states = text_encoder(batch["input_ids"], return_dict=False)[0]
                target = noise  # epsilon prediction, as gouache-tiny's scheduler says
                model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
                loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(lora_layers, 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            if step >= total:
                break
    wall = time.perf_counter() - t0
    assert noise_scheduler.config.prediction_type == "epsilon", noise_scheduler.config.prediction_type
    return {"side": "plain", **timing(starts, args.warmup_steps, args.steps), "total_s": wall,
            "setup_s": starts[0] - t0, "final_loss": losses[-1],
            "mean_loss_timed": sum(losses[args.warmup_steps : args.warmup_steps + args.steps]) / args.steps,
            **lora_summary(accelerator.unwrap_model(unet)), **common()}


def common() -> dict:
    import torch

    return {"peak_rss_mib": peak_rss_mib(), "threads": torch.get_num_threads(),
            "loadavg_1min_after": os.getloadavg()[0]}  # above --threads: something else shared the CPU


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = (run_gouache if args.worker == "gouache" else run_plain)(args)
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: run the sides, compare, write ----------------------------------------------------


def spawn(args, side: str, dataset: Path, model_folder: Path, work: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--dataset", str(dataset),
           "--model-folder", str(model_folder), "--work", str(work), "--steps", str(args.steps),
           "--warmup-steps", str(args.warmup_steps), "--threads", str(args.threads), "--batch-size",
           str(args.batch_size), "--rank", str(args.rank), "--lr", repr(args.lr), "--seed", str(args.seed)]
    from gouache.bench import run_worker

    return run_worker(cmd, side, args.threads, env={"GOUACHE_HOME": str(args.home)})


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        name = platform.processor() or "?"
    return f"{name}, {os.cpu_count()} CPU cores"


ROWS = [  # (label, key, format, show the ratio gouache / plain)
    ("steps / s", "steps_per_s", "{:.3f}", True),
    ("s / step", "s_per_step", "{:.3f}", True),
    ("s / step, fastest", "s_per_step_min", "{:.3f}", True),
    ("s / step, slowest", "s_per_step_max", "{:.3f}", True),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}", True),
    ("final loss", "final_loss", "{:.4f}", False),
    ("mean loss, timed steps", "mean_loss_timed", "{:.4f}", False),
    ("LoRA modules", "lora_modules", "{}", False),
    ("trainable parameters", "trainable_params", "{}", False),
    ("setup s (not timed)", "setup_s", "{:.1f}", True),
    ("warm-up s (not timed)", "warmup_s", "{:.1f}", True),
    ("1-min load average after", "loadavg_1min_after", "{:.2f}", False),
]


def table(gouache: dict, plain: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, key, fmt, show_ratio in ROWS:
        g, p = gouache[key], plain[key]
        ratio = f"{g / p:.2f}x" if show_ratio and p else ""
        rows.append((label, fmt.format(g), fmt.format(p), ratio))
    return rows


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# LoRA training on gouache-tiny: gouache vs plain diffusers + peft, {result['date']}", "",
             f"{cfg['images']} shapes images 64x64, rank {cfg['rank']} on attention projections, batch "
             f"{cfg['batch_size']}, lr {cfg['lr']:g} (cosine, warm-up), fp32, {cfg['steps']} timed steps after "
             f"{cfg['warmup_steps']} warm-up steps, seed {cfg['seed']}, {cfg['threads']} threads; {result['machine']}; "
             f"torch {result['torch']}, diffusers {result['diffusers']}, peft {result['peft']}", "",
             "| | gouache | plain | gouache / plain |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table(result["gouache"], result["plain"])]
    lines += ["", f"gouache / plain steps per second: **{result['ratio_steps_per_s']:.2f}x** (above 1: gouache is faster). "
              f"Attention processor: gouache {result['gouache']['attn_processor']}, plain {result['plain']['attn_processor']}."]
    return "\n".join(lines) + "\n"


def number(kind: type, minimum: float, strict: bool):
    """An argparse type: a ``kind`` (int or float) above ``minimum`` (``strict``) or at least it."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum) or value == float("inf"):  # NaN fails too
            raise argparse.ArgumentTypeError(
                f"must be {'above' if strict else 'at least'} {minimum}, got {text}")
        return value
    return parse


positive_int, non_negative_int, positive_float = number(int, 1, False), number(int, 0, False), number(float, 0, True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=positive_int, default=60, help="timed optimizer steps per side (default 60)")
    parser.add_argument("--warmup-steps", type=non_negative_int, default=5,
                        help="untimed steps before the timed ones (default 5)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads in each subprocess (default 2)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per step (default 16)")
    parser.add_argument("--rank", type=positive_int, default=8, help="LoRA rank; alpha = rank (default 8)")
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="peak learning rate (default 1e-4)")
    parser.add_argument("--images", type=positive_int, default=64, help="images in the dataset (default 64)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data and both runs (default 0)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: --steps 10 --warmup-steps 2")
    parser.add_argument("--out", help="write the results as JSON here, and a Markdown table next to it (.md)")
    parser.add_argument("--home", default=str(DEFAULT_HOME),
                        help=f"GOUACHE_HOME for the runs: where the built-in model is materialised (default {DEFAULT_HOME})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dataset and run folders")
    parser.add_argument("--worker", choices=("gouache", "plain"), help=argparse.SUPPRESS)
    for name in ("--dataset", "--model-folder", "--work"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup_steps = 10, 2
    if args.out and not args.out.endswith(".json"):
        parser.error(f"--out must name a .json file (the .md goes next to it), got {args.out!r}")
    if args.worker:
        return worker(args)

    os.environ["GOUACHE_HOME"] = str(args.home)
    work = Path(tempfile.mkdtemp(prefix="gouache-lora-bench-"))
    try:
        print(f"dataset: {args.images} shapes images into {work} ...", flush=True)
        dataset = make_dataset(work / "data", args.images, args.seed)
        model_folder = builtin_folder()
        gouache, plain = (spawn(args, side, dataset, model_folder, work) for side in ("gouache", "plain"))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    import diffusers
    import peft
    import torch

    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "torch": torch.__version__,
              "diffusers": diffusers.__version__, "peft": peft.__version__,
              "config": {"steps": args.steps, "warmup_steps": args.warmup_steps, "threads": args.threads,
                         "batch_size": args.batch_size, "rank": args.rank, "alpha": args.rank, "lr": args.lr,
                         "images": args.images, "resolution": 64, "seed": args.seed, "targets": "attn",
                         "mixed_precision": "no", "schedule": "cosine with warm-up min(50, total // 2)",
                         "timing": "start of step W to start of step W+N, W warm-up steps", "quick": args.quick},
              "gouache": gouache, "plain": plain,
              "ratio_steps_per_s": gouache["steps_per_s"] / plain["steps_per_s"]}
    md = markdown(result)
    print()
    print(md)
    if args.out:
        from gouache.bench import write_results

        write_results(Path(args.out), result, md)


if __name__ == "__main__":
    main()
