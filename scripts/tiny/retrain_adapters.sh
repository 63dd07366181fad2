#!/usr/bin/env bash
# Retrain every adapter gouache-tiny ships, on the gouache-tiny installed in the package, with the
# recipes in README.md ("Shipped examples"), docs/controlnet.md and docs/speed.md ("LCM-LoRA").
# Two lanes of one thread each: the edge ControlNet (the longest) beside the LoRA, the embedding
# and the LCM-LoRA in turn. Every trainer resumes from its last checkpoint: run it again to go on.
#
#   scripts/tiny/retrain_adapters.sh RUNS   # e.g. runs/adapters; logs in RUNS/*.log
#
# Then copy the results into src/gouache/models/weights/ (the script prints where they are).
set -euo pipefail
RUNS=${1:?usage: retrain_adapters.sh RUNS_FOLDER}
G=${GOUACHE:-gouache}
mkdir -p "$RUNS"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

edges() {
  $G train controlnet shapes --preprocessor canny --out "$RUNS/edges" --name gouache-tiny-edges \
    --steps 4500 --batch-size 16 --lr 3e-4 --warmup-steps 100 --min-snr-gamma 5 --caption-dropout 0.1 \
    --embedding-channels 16,32,64,128 --checkpoint-every 250 --validation-every 500 --save-dtype fp16
}

others() {
  [ -d "$RUNS/outline/data" ] || {
    $G dataset shapes "$RUNS/outline/raw" --n 100 --style outline --seed 21
    $G dataset prepare "$RUNS/outline/raw" "$RUNS/outline/data" --resolution 64
  }
  $G train lora "$RUNS/outline/data" --out "$RUNS/outline/lora" --name gouache-outline --targets all --rank 8 \
    --batch-size 16 --lr 1e-3 --steps 1200 --warmup-steps 50 --flip --cache-latents
  [ -d "$RUNS/sks/data" ] || {
    $G dataset shapes "$RUNS/sks/raw" --n 20 --colour yellow --shape circle --seed 3 \
      --caption "a <sks> on a {background} background"
    $G dataset prepare "$RUNS/sks/raw" "$RUNS/sks/data" --resolution 64
  }
  $G train embedding "$RUNS/sks/data" --out "$RUNS/sks/run" --token "<sks>" --init-word circle --num-vectors 2 \
    --steps 500 --batch-size 8 --lr 3e-3 --warmup-steps 25
  [ -d "$RUNS/lcm-data" ] || {
    $G dataset shapes "$RUNS/lcm-raw" --n 2000 --seed 1
    $G dataset prepare "$RUNS/lcm-raw" "$RUNS/lcm-data" --resolution 64
  }
  $G train lcm-lora "$RUNS/lcm-data" --out "$RUNS/lcm" --name gouache-tiny-lcm --steps 2000 --batch-size 16 \
    --rank 16 --lr 3e-4 --warmup-steps 100 --checkpoint-every 250 --validation-every 250
}

date
edges > "$RUNS/edges.log" 2>&1 &
others > "$RUNS/others.log" 2>&1 &
wait
date
find "$RUNS" -maxdepth 3 \( -name "gouache-outline.safetensors" -o -name "*sks*.safetensors" \
  -o -name "gouache-tiny-lcm.safetensors" -o -name "gouache-tiny-edges" \) -print
