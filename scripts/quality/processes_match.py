"""How far N processes with --batch-size B end from one process with --batch-size N·B (docs/scale-out.md).

Trains gouache-tiny's LoRA (also with --grad-accum 2), a textual-inversion embedding and a ControlNet
once in one process and once in two (``accelerate launch --multi_gpu --num_processes 2`` with
``ACCELERATE_USE_CPU=1``: gloo over loopback), resumes a checkpoint of each setup in the other, and
prints the largest absolute difference of the weights and the difference's L2 norm relative to the
weights'. The reference row trains one process on half the batch: what seeing other examples costs.

    PYTHONPATH=src python scripts/quality/processes_match.py /tmp/processes-match
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

STEPS = 20


def gouache(out: Path, argv: list[str], processes: int = 1) -> None:
    if processes == 1:
        cmd = [sys.executable, "-m", "gouache", *argv]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip",
               "127.0.0.1", "--main_process_port", str(port), "-m", "gouache", *argv]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "GOUACHE_DTYPE": "fp32"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def weights(path: Path) -> torch.Tensor:
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    return torch.cat([v.float().flatten() for f in files for k, v in sorted(load_file(f).items())
                      if not k.endswith(".alpha")])


def row(name: str, a: Path, b: Path) -> None:
    x, y = weights(a), weights(b)
    print(f"| {name} | {(x - y).abs().max().item():.1e} | {((x - y).norm() / x.norm()).item():.1e} |", flush=True)


def main(root: Path) -> None:
    from gouache.data.prepare import PrepareConfig, prepare
    from gouache.tiny.shapes import write_folder

    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GOUACHE_HOME", str(root / "home"))
    data, ti = root / "data", root / "ti"
    if not data.exists():
        write_folder(root / "raw", 16, style="outline")
        prepare(PrepareConfig(src=root / "raw", dst=data, resolution=64), report=lambda s: None)
    if not ti.exists():
        write_folder(root / "tiraw", 8, colour="yellow", shape="circle", template="a <sks> on a {background} background")
        prepare(PrepareConfig(src=root / "tiraw", dst=ti, resolution=64), report=lambda s: None)
    runs = root / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    lora = [str(data), "--name", "o", "--steps", str(STEPS), "--lr", "1e-3", "--warmup-steps", "2", "--rank", "4",
            "--save-dtype", "fp32", "--checkpoint-every", "10", "--caption-dropout", "0.2", "--noise-offset", "0.05"]
    emb = ["embedding", str(ti), "--token", "<sks>", "--init-word", "circle", "--num-vectors", "2", "--steps",
           str(STEPS), "--lr", "0.05", "--warmup-steps", "2"]
    cn = ["controlnet", "shapes", "--preprocessor", "canny", "--name", "e", "--steps", "10", "--lr", "1e-4",
          "--warmup-steps", "2", "--embedding-channels", "8,16,32,64", "--save-dtype", "fp32", "--validation-count", "0"]
    print(f"| run ({STEPS} steps unless said) | max abs difference | relative L2 |\n|---|---|---|")
    for procs, batch in ((1, 4), (2, 2)):
        gouache(runs, ["train", "lora", *lora, "--out", str(runs / f"lora{procs}"), "--batch-size", str(batch)], procs)
    row("LoRA: 1 process × batch 4 vs 2 × 2", runs / "lora1/o.safetensors", runs / "lora2/o.safetensors")
    for procs, batch in ((1, 4), (2, 2)):
        gouache(runs, ["train", "lora", *lora, "--out", str(runs / f"accum{procs}"), "--batch-size", str(batch),
                       "--grad-accum", "2"], procs)
    row("LoRA, --grad-accum 2: 1 × batch 4 vs 2 × 2", runs / "accum1/o.safetensors", runs / "accum2/o.safetensors")
    for procs, batch in ((1, 2), (2, 1)):
        gouache(runs, ["train", "lora", *lora, "--out", str(runs / f"one{procs}"), "--batch-size", str(batch)], procs)
    row("LoRA: 1 × batch 2 vs 2 × 1 (see: a batch of 1)", runs / "one1/o.safetensors", runs / "one2/o.safetensors")
    for writer, reader, batch in ((1, 2, 2), (2, 1, 4)):
        out = runs / f"resume{writer}{reader}"
        shutil.copytree(runs / f"lora{writer}/checkpoints/step-0000010", out / "checkpoints/step-0000010")
        gouache(runs, ["train", "lora", *lora, "--out", str(out), "--batch-size", str(batch), "--resume"], reader)
        row(f"LoRA: step 10 of {writer} process(es) resumed in {reader}, vs 1 process",
            runs / "lora1/o.safetensors", out / "o.safetensors")
    for procs, batch in ((1, 4), (2, 2)):
        gouache(runs, ["train", *emb, "--out", str(runs / f"emb{procs}"), "--batch-size", str(batch)], procs)
    row("embedding: 1 × batch 4 vs 2 × 2", runs / "emb1/sks.safetensors", runs / "emb2/sks.safetensors")
    for procs, batch in ((1, 4), (2, 2)):
        gouache(runs, ["train", *cn, "--out", str(runs / f"cn{procs}"), "--batch-size", str(batch)], procs)
    row("ControlNet (10 steps): 1 × batch 4 vs 2 × 2", runs / "cn1/e", runs / "cn2/e")
    gouache(runs, ["train", "lora", *lora, "--out", str(runs / "half"), "--batch-size", "2"])
    row("reference: LoRA 1 × batch 4 vs 1 × batch 2 (other examples)", runs / "lora1/o.safetensors",
        runs / "half/o.safetensors")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/processes-match"))
