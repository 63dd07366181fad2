"""benchmarks/gpu.py's smoke run: tiny SD 1.5 and SDXL architectures with random weights, 3 steps,
on the CPU, so that CI keeps the script the GPU session runs working."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def run(*args: str, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    """The script as the device runs it: this tree's `src` first, the rest of PYTHONPATH kept."""
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1] / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600, env=env)


def test_smoke_run_writes_every_side(tmp_path):
    out = tmp_path / "gpu.json"
    done = run("--smoke", "--repeats", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {(r["case"], r["side"]): r for r in result["rows"]}
    for case in ("sd15-b1", "sd15-b8", "sdxl-b1"):
        for side in ("diffusers", "gouache"):
            row = rows[case, side]
            assert "error" not in row, row
            assert row["it_s"] > 0 and row["s_per_image"] > 0 and row["images_s"] > 0
    assert rows["sd15-b8", "gouache"]["batch"] == 2
    for side in ("gouache-tome", "gouache-deepcache", "gouache-cfgtrunc"):
        assert rows["sd15-b1", side]["s_per_image"] > 0
    # no GPU here: the compiled sides say why they did not run
    assert "CUDA" in rows["sd15-b1", "gouache-compile"]["skipped"]
    assert result["ratios"]["sd15-b1 gouache / diffusers"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| sd15-b1 | gouache |" in table and "sd15-b8 gouache / diffusers (images/s)" in table
    assert result["machine"]["torch"] and result["machine"]["diffusers"]


def test_the_budget_skips_sides_with_a_note(tmp_path):
    out = tmp_path / "gpu.json"
    done = run("--smoke", "--budget-s", "0.5", "--cases", "sd15-b1", "--sides", "diffusers,gouache", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert rows and all("budget" in r["skipped"] for r in rows)


@pytest.mark.parametrize("args,message", [
    (["--cases", "sd3"], "unknown case 'sd3'"),
    (["--sides", "turbo"], "unknown side 'turbo'"),
])
def test_bad_arguments_are_one_line(tmp_path, args, message):
    done = run("--smoke", "--out", str(tmp_path / "x.json"), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_train_smoke_run_measures_both_sides(tmp_path):
    """benchmarks/gpu_train.py --smoke: gouache-tiny's LoRA, gouache's trainer and the plain loop, on CPU."""
    out = tmp_path / "train.json"
    done = run("--smoke", "--out", str(out), script=SCRIPT.with_name("gpu_train.py"))
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["side"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"plain", "gouache"}
    assert all(r["steps_s"] > 0 and "error" not in r for r in rows.values()), rows


def test_the_device_command_fits_the_run_tool():
    """scripts/gpu_session.sh --command: the one line the GPU session runs fits the `run` tool (2,000
    characters, 600 s), installs the carried wheels first, and leaves its results under $OUT."""
    root = SCRIPT.parents[1]
    done = subprocess.run(["bash", str(root / "scripts" / "gpu_session.sh"), "--command"], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip()
    assert "\n" not in command and len(command) <= 2000
    assert command.index(".whl/*.whl") < command.index("benchmarks/gpu.py")
    for result in ("$OUT/gpu.json", "$OUT/gpu-train.json", "$OUT/cuda-tests.txt"):
        assert result in command
    # what the parts may take: the CUDA tests' timeout and both budgets, under the tool's 600 s with
    # a minute for installing, building models and writing (each benchmark stops inside its budget)
    tests_s = int(re.search(r"timeout (\d+) python3 -m pytest", command).group(1))
    budgets = [float(b) for b in re.findall(r"--budget-s (\d+)", command)]
    assert len(budgets) == 2 and tests_s + sum(budgets) <= 540


def test_the_session_script_refuses_an_unknown_argument_in_one_line():
    root = SCRIPT.parents[1]
    done = subprocess.run(["bash", str(root / "scripts" / "gpu_session.sh"), "--rehearsal"], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--rehearse" in done.stderr
    assert done.stdout == ""  # it stopped before building the wheels (which lists them) or printing the command
