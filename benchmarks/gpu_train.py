"""LoRA training speed on a GPU: gouache's trainer against a plain diffusers + peft loop, bf16 mixed precision.

Both sides train a rank-8 LoRA on the attention projections (``to_q/to_k/to_v/to_out.0``) of the
same base, with accelerate's bf16 mixed precision, AdamW, gradient clipping at 1.0, on the same
procedural shapes (``gouache.tiny.shapes``) prepared at the model's size, in one process:

- **gouache**: :class:`gouache.train.lora.LoraObjective` through gouache's one training loop
  (``gouache.train.loop.train``), what ``gouache train lora --mixed-precision bf16`` runs;
- **plain**: the loop of diffusers' ``examples/text_to_image/train_text_to_image_lora.py``: the frozen
  VAE and text encoder moved to the GPU in bf16, the UNet in fp32 with the LoRA, per step
  ``vae.encode`` → noise at a random timestep → text encoder → UNet → MSE → backward → clip → step.

Models: gouache-tiny (64², batch 16) and the SD 1.5 architecture with random weights (512², batch 4).
steps/s = N / (start of step W+N − start of step W), N timed steps after W warm-up steps (both loops
read the loss on the host every step, so the starts are the GPU's pace).

    python benchmarks/gpu_train.py --out benchmarks/results/gpu-train-2026-11-20.json --budget-s 120
    python benchmarks/gpu_train.py --smoke --out /tmp/gpu-train.json    # CPU, gouache-tiny, 3 steps (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
CASES = {"tiny": {"size": 64, "batch": 16}, "sd15": {"size": 512, "batch": 4}}


def make_dataset(root: Path, size: int, n: int) -> Path:
    """``n`` shapes images with captions at ``size``², as a prepared imagefolder (``metadata.jsonl``)."""
    from gouache.data.prepare import PrepareConfig, prepare
    from gouache.tiny.shapes import write_folder

    raw = root / f"raw-{size}"
    write_folder(raw, n, seed=0, resolution=size)
    out = root / f"prepared-{size}"
    prepare(PrepareConfig(src=str(raw), dst=str(out), resolution=size), report=lambda line: None)
    return out


def base_model(case: str, device: str):
    """A fresh fp32 model on ``device``: gouache-tiny, or SD 1.5's architecture with random weights."""
    from gouache.pipelines.model import LoadedModel, load_model
    from gouache.speed import SpeedSettings

    if case == "tiny":
        return load_model(None, device=device, speed=SpeedSettings.reference())
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu import build_components, stock_pipeline

    components = build_components("sd15", device, torch.float32, smoke=False)
    return LoadedModel(stock_pipeline("sd15", components), "sd15-random", "", "0" * 10, torch.float32, device)


def steps_per_s(starts: list[float], warmup: int) -> float | None:
    timed = starts[warmup:]
    return (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 and timed[-1] > timed[0] else None


def run_gouache(case: str, dataset: Path, work: Path, args) -> dict:
    from gouache.data.folder import ImageFolderDataset
    from gouache.train.driver import loop_config
    from gouache.train.lora import LoraObjective, LoraTrainConfig
    from gouache.train.loop import train

    spec = CASES[case]
    model = base_model(case, args.device)
    cfg = LoraTrainConfig(dataset=dataset, out_dir=work / f"gouache-{case}", base=None, name="bench", rank=8,
                          targets="attn", steps=args.warmup + args.steps + 1, batch_size=spec["batch"], lr=1e-4,
                          mixed_precision=args.mixed_precision, checkpoint_every=0, checkpoint_minutes=10_080,
                          validation_prompts=[], seed=0, overwrite=True)
    starts: list[float] = []

    class Timed(LoraObjective):
        def loss(self, model, index):
            starts.append(time.perf_counter())
            return super().loss(model, index)

    Timed.loss.sharded = getattr(LoraObjective.loss, "sharded", False)
    data = ImageFolderDataset(dataset, spec["size"], seed=0)
    torch.manual_seed(0)
    train(Timed(cfg, model, data), loop_config(cfg), lambda line: None)
    return {"steps_s": steps_per_s(starts[: args.warmup + args.steps + 1], args.warmup)}


def run_plain(case: str, dataset: Path, args) -> dict:
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    from gouache.data.folder import ImageFolderDataset

    spec = CASES[case]
    model = base_model(case, args.device)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision, torch.float32)
    pipe = model.pipeline
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    for frozen in (vae, text_encoder):  # the example's weight_dtype for what does not train
        torch.nn.Module.to(frozen, accelerator.device, weight_dtype)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    scheduler = DDPMScheduler.from_config(model.scheduler_config)
    data = ImageFolderDataset(dataset, spec["size"], seed=0)
    starts = []
    for step in range(args.warmup + args.steps + 1):
        starts.append(time.perf_counter())
        unet.train()
        pixels, captions = data.batch(step, spec["batch"])
        latents = vae.encode(pixels.to(accelerator.device, weight_dtype)).latent_dist.sample()
        latents = latents * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
        ids = tokenizer(captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                        return_tensors="pt").input_ids.to(accelerator.device)
        hidden = text_encoder(ids, return_dict=False)[0]
        pred = unet(scheduler.add_noise(latents, noise, t), t, hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()  # as the example's logging: the loss read every step
    return {"steps_s": steps_per_s(starts, args.warmup)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="results JSON")
    parser.add_argument("--budget-s", type=float, default=120, help="time budget of the whole run (default 120)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed-precision", default="bf16", choices=("no", "bf16", "fp16"))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps per side (default 5)")
    parser.add_argument("--smoke", action="store_true", help="gouache-tiny only, 3 steps, 1 warm-up, no bf16 (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.warmup, args.mixed_precision = 3, 1, "no"
    cases = ["tiny"] if args.smoke else ["tiny", "sd15"]
    os.environ.setdefault("GOUACHE_HOME", tempfile.mkdtemp(prefix="gouache-gpu-train-"))
    start, rows = time.perf_counter(), []
    guess = {"tiny": 20.0, "sd15": 60.0}  # per side, building the model included (H200)
    with tempfile.TemporaryDirectory(prefix="gouache-gpu-train-") as tmp:
        work = Path(tmp)
        for case in cases:
            dataset = None
            for side in ("plain", "gouache"):
                row = {"case": case, "side": side, **CASES[case], "mixed_precision": args.mixed_precision}
                left = args.budget_s - (time.perf_counter() - start)
                if guess[case] > left:
                    rows.append({**row, "skipped": f"budget: needs about {guess[case]:.0f} s, {left:.0f} s left"})
                    continue
                t0 = time.perf_counter()
                try:
                    dataset = dataset or make_dataset(work, CASES[case]["size"], 32)
                    row.update(run_plain(case, dataset, args) if side == "plain"
                               else run_gouache(case, dataset, work, args))
                except Exception as exc:  # a side's failure is a row, not the end of the run
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                    traceback.print_exc()
                row["side_s"] = round(time.perf_counter() - t0, 1)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
    result = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "rows": rows, "wall_s": round(time.perf_counter() - start, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    os.replace(tmp_out, out)
    for r in rows:
        print(f"{r['case']:5} {r['side']:8} {r.get('steps_s') or r.get('skipped') or r.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
