#!/usr/bin/env bash
# Prepare the GPU session of issue #25 (docs/gpu.md): the wheels the device machine lacks, in the
# ignored folder .whl/ at the repository's root, and the one command to run there.
#
#   scripts/gpu_session.sh            # builds .whl/ (about 8 MB) and prints the device command
#   scripts/gpu_session.sh --command  # prints the device command only
#
# The device machine has PyTorch (CUDA), transformers, accelerate, peft, safetensors, scipy, numpy,
# Pillow, tqdm, regex and pytest, and no network: diffusers and openai-clip (CLIP's vocabulary, for
# the tokenizer) travel as wheels; gouache itself runs from the working tree (PYTHONPATH=src).
set -euo pipefail

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

exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl && mkdir -p .whl
diffusers_version="$("$python" -c 'import diffusers; print(diffusers.__version__)')"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "diffusers==$diffusers_version"
"$python" -m pip wheel -q --no-deps -w .whl "openai-clip==1.0.1"  # an sdist only: built here, pure Python
ls -la .whl
du -sh .whl

cat <<INFO

Device command (the run tool: kind nvidia-h200, carry [".whl"], timeout_s 600):

$(device_command)

Then copy \$OUT's gpu.json, gpu.md and gpu-train.json to benchmarks/results/ (gpu-$(date +%Y-%m-%d).json/.md,
gpu-train-$(date +%Y-%m-%d).json) and commit them.
INFO
