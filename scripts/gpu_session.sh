#!/usr/bin/env bash
# Prepare the GPU session of issue #25 (docs/gpu.md): the wheels the device machine lacks, in the
# ignored folder .whl/ at the repository's root, and the one command to run there.
#
#   scripts/gpu_session.sh            # builds .whl/ (about 8 MB) and prints the device command
#   scripts/gpu_session.sh --command  # prints the device command only
#   scripts/gpu_session.sh --rehearse # builds .whl/, then rehearses the device run here, on the CPU
#                                     # (a minute or two, no device time): see rehearse() below
#
# The device machine has PyTorch (CUDA), transformers, accelerate, peft, safetensors, scipy, numpy,
# Pillow, tqdm, regex and pytest, and no network: diffusers and openai-clip (CLIP's vocabulary, for
# the tokenizer) travel as wheels; gouache itself runs from the working tree (PYTHONPATH=src).
set -euo pipefail

case "${1:-}" in
  ""|--command|--rehearse) ;;
  *) echo "gpu_session.sh: unknown argument '$1' (give none, --command or --rehearse)" >&2; exit 2 ;;
esac
root="$(git rev-parse --show-toplevel)"
cd "$root"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
budget="${GPU_BUDGET_S:-330}"
train_budget="${GPU_TRAIN_BUDGET_S:-100}"

device_command() {
  # one line, at most 2,000 characters: install the carried wheels, run the CUDA tests (no host
  # syncs in the loop, CUDA graphs, compile) on the real GPU, then the benchmark; $OUT comes back
  printf '%s' "set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1; export PYTHONPATH=/tmp/site:\$PWD/src PYTHONUNBUFFERED=1 GOUACHE_HOME=/tmp/gouache-home; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee \$OUT/nvidia-smi.txt; timeout 100 python3 -m pytest -q -p no:cacheprovider tests/speed/test_no_sync.py tests/speed/test_cuda_device.py 2>&1 | tail -15 | tee \$OUT/cuda-tests.txt; python3 benchmarks/gpu.py --out \$OUT/gpu.json --budget-s $budget 2>&1 | tee \$OUT/gpu.log | tail -40; python3 benchmarks/gpu_train.py --out \$OUT/gpu-train.json --budget-s $train_budget 2>&1 | tail -8"
}

if [ "${1:-}" = "--command" ]; then
  device_command; echo
  exit 0
fi

# The device's library versions (/work/.library/device/KINDS.md, as last read): the rehearsal pins
# these, so that an API gouache or the carried diffusers uses and the device's copy lacks fails here.
# PyTorch stays this machine's CPU build (the device has 2.11 with CUDA); numpy the newest for it.
device_pins="${GPU_DEVICE_PINS:-transformers==5.17.0 huggingface_hub==1.33.0 accelerate==1.15.0 tokenizers==0.23.2 safetensors==0.8.0}"

rehearse() {
  # A throwaway venv with the device's libraries and none of gouache's other requirements (no
  # fastapi, uvicorn, gradio, torchsde, ftfy: the device has none of them), the wheels installed
  # exactly as the device command installs them, then what the device command runs, on the CPU:
  # the CUDA test files (their CPU halves), and both benchmarks' smoke runs.
  local venv="${GPU_REHEARSAL_VENV:-/tmp/gouache-gpu-rehearsal}" torch_version
  torch_version="$("$python" -c 'import torch; print(torch.__version__.split("+")[0])')"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  # shellcheck disable=SC2086  # the pins are words
  if ! PIP_CONSTRAINT= "$venv/bin/python" -m pip install -q "torch==$torch_version" $device_pins \
      scipy pillow tqdm regex requests filelock peft pytest > "$venv/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "$venv/pip.log" | tail -5 >&2; return 1
  fi
  rm -rf "$venv/site"
  if ! "$venv/bin/python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$venv/site" .whl/*.whl > "$venv/pip.log" 2>&1; then
    tail -5 "$venv/pip.log" >&2; return 1
  fi
  "$venv/bin/python" -m pip list 2>/dev/null | grep -i -E '^(torch|transformers|huggingface.hub|accelerate|tokenizers|safetensors|peft|numpy) '
  local out status=0
  out="$(mktemp -d)"
  export PYTHONPATH="$venv/site:$root/src" GOUACHE_HOME="$out/home"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/speed/test_no_sync.py tests/speed/test_cuda_device.py \
    tests/benchmarks/test_gpu_smoke.py 2>&1 | tail -3 || status=1
  "$venv/bin/python" benchmarks/gpu.py --smoke --out "$out/gpu.json" > "$out/gpu.log" 2>&1 || status=1
  grep -E '^\| sd15-b1 gouache / diffusers' "$out/gpu.md" || status=1
  "$venv/bin/python" benchmarks/gpu_train.py --smoke --out "$out/gpu-train.json" 2>&1 | tail -2 || status=1
  if grep -q '"error"' "$out/gpu.json" "$out/gpu-train.json"; then
    grep -h '"error"' "$out/gpu.json" "$out/gpu-train.json"; status=1
  fi
  if [ "$status" = 0 ]; then
    echo "rehearsal passed (logs in $out); the device run's command:"
    device_command; echo
  else
    echo "rehearsal FAILED (logs in $out): fix this before spending device time" >&2
  fi
  return "$status"
}

exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl && mkdir -p .whl
diffusers_version="$("$python" -c 'import diffusers; print(diffusers.__version__)')"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "diffusers==$diffusers_version"
"$python" -m pip wheel -q --no-deps -w .whl "openai-clip==1.0.1"  # an sdist only: built here, pure Python
ls -la .whl
du -sh .whl

if [ "${1:-}" = "--rehearse" ]; then
  rehearse
  exit $?
fi

cat <<INFO

Device command (the run tool: kind nvidia-h200, carry [".whl"], timeout_s 600):

$(device_command)

Then copy \$OUT's gpu.json, gpu.md and gpu-train.json to benchmarks/results/ (gpu-$(date +%Y-%m-%d).json/.md,
gpu-train-$(date +%Y-%m-%d).json) and commit them.
INFO
