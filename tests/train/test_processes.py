"""Training across processes: N processes with --batch-size B end where one process with N·B ends.

The multi-process runs are real: ``accelerate launch --multi_gpu --num_processes 2`` with
``ACCELERATE_USE_CPU=1`` starts two processes with torchrun that join one gloo group over loopback
(127.0.0.1, a free port), as on a machine without a GPU.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gouache.train.diffusion import FolderLatents, drop_captions
from gouache.train.lora import LoraTrainConfig, train_lora
from gouache.train.loop import read_losses
from gouache.train.processes import WHOLE, Shard

# float32 sums in another order (DDP's all-reduce of two half-batch means against one mean, the UNet on
# 2 rows against 4) move the weights by a few 1e-7 in these runs; a run whose processes draw other noise
# than one process does misses by ~1e-3 (one step of lr 1e-3). See docs/scale-out.md.
WEIGHT_TOLERANCE = 1e-5


def _draws(shard: Shard, kind: str, layout) -> torch.Tensor:
    torch.manual_seed(7)
    n = 4 // shard.world
    if kind == "randint":
        return shard.randint(1000, n)
    if kind == "randn":
        return shard.randn((n, 4, 3, 5))
    return shard.randn_like(torch.empty(n, 4, 3, 5, memory_format=layout))


@pytest.mark.parametrize("kind, layout", [("randn", None), ("randint", None), ("randn_like", torch.contiguous_format),
                                          ("randn_like", torch.channels_last)])
def test_the_shards_of_a_draw_are_the_draw_of_the_whole_batch(kind, layout):
    whole = _draws(WHOLE, kind, layout)
    assert torch.equal(torch.cat([_draws(Shard(r, 2), kind, layout) for r in range(2)]), whole)


def test_the_shards_drop_the_captions_the_whole_batch_drops():
    captions = [f"caption {i}" for i in range(8)]
    whole = drop_captions(captions, 0.5, index=3)
    assert "" in whole and whole != captions
    assert drop_captions(captions[:4], 0.5, 3, Shard(0, 2)) + drop_captions(captions[4:], 0.5, 3, Shard(1, 2)) == whole


@pytest.fixture(scope="module")
def dataset(shapes_dataset):
    return shapes_dataset("processes-data", 8, style="outline")


@pytest.mark.parametrize("cache", [False, True])
def test_the_shards_of_a_batch_are_its_images_and_latents(tiny_model, dataset, cache):
    from gouache.train.driver import image_folder

    data = image_folder(LoraTrainConfig(dataset=dataset, out_dir="unused", flip=True), tiny_model)
    latents = FolderLatents(tiny_model.vae, data, cache=cache)
    torch.manual_seed(0)
    whole, captions = latents.batch(5, 4)
    parts = []
    for rank in range(2):
        torch.manual_seed(0)
        parts.append(latents.batch(5, 2, Shard(rank, 2)))
    assert parts[0][1] + parts[1][1] == captions
    assert torch.allclose(torch.cat([p[0] for p in parts]), whole, atol=1e-6)


def test_accelerate_launch_cpu_starting_one_process_is_one_clear_error(run, dataset, tmp_path, monkeypatch):
    # what `accelerate launch --cpu --num_processes 2` gives its one process (no mpirun host file)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    code, out, err = run("train", "lora", dataset, "--out", tmp_path / "run", "--steps", 1)
    assert code == 1 and err.startswith("gouache: error:") and "--multi_gpu" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# real runs: one process with the whole batch, two with half each

STEPS, BATCH = 4, 4


def _flags(dataset, out: Path, batch: int) -> list[str]:
    return [str(dataset), "--out", str(out), "--name", "o", "--steps", str(STEPS), "--batch-size", str(batch),
            "--lr", "1e-3", "--warmup-steps", "1", "--rank", "4", "--save-dtype", "fp32", "--checkpoint-every", "2",
            "--caption-dropout", "0.3", "--noise-offset", "0.05"]


def _config(dataset, out: Path, **kw) -> LoraTrainConfig:
    return LoraTrainConfig(dataset=dataset, out_dir=out, name="o", steps=STEPS, batch_size=BATCH, lr=1e-3,
                           warmup_steps=1, rank=4, save_dtype="fp32", checkpoint_every=2, caption_dropout=0.3,
                           noise_offset=0.05, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(processes: int, *argv: str) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N -m gouache ARGV`` on the CPU, over loopback."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()), "-m", "gouache", *argv]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same_weights(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys()
    worst = max((x[k] - y[k]).abs().max().item() for k in x)
    assert worst <= WEIGHT_TOLERANCE, f"weights differ by up to {worst:.2e}"


@pytest.fixture(scope="module")
def one(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("one-process")
    return train_lora(_config(dataset, out), log=lambda s: None)


@pytest.fixture(scope="module")
def two(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("two-processes")
    done = launch(2, "train", "lora", *_flags(dataset, out, BATCH // 2))
    return out / "o.safetensors", done.stdout + done.stderr


def test_two_processes_with_half_the_batch_end_at_the_weights_of_one(one, two):
    path, output = two
    assert_same_weights(one, path)
    a, b = read_losses(one.parent / "loss.jsonl"), read_losses(path.parent / "loss.jsonl")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # one process logged, the global mean loss
    assert [r["lr"] for r in a] == [r["lr"] for r in b]  # the schedule steps once per step, not per process
    assert all(abs(r["loss"] - s["loss"]) < 1e-5 for r, s in zip(a, b))
    assert output.count(f"step {STEPS}/{STEPS}") == 1 and output.count("checkpoint ") == 2


def test_two_processes_write_each_checkpoint_once_and_completely(two):
    checkpoints = two[0].parent / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-0000002", "step-0000004"]  # nothing half-written
    state = json.loads((checkpoints / "step-0000004" / "state.json").read_text())
    assert {"trainable_0.safetensors", "optimizer.bin", "random_states_0.pkl"} <= set(state["files"])


def test_a_checkpoint_of_two_processes_resumes_in_one(one, two, dataset, tmp_path):
    shutil.copytree(two[0].parent / "checkpoints" / "step-0000002", tmp_path / "checkpoints" / "step-0000002")
    resumed = train_lora(_config(dataset, tmp_path, resume=True), log=lambda s: None)
    assert_same_weights(one, resumed)


def test_a_checkpoint_of_one_process_resumes_in_two(one, dataset, tmp_path):
    shutil.copytree(one.parent / "checkpoints" / "step-0000002", tmp_path / "checkpoints" / "step-0000002")
    done = launch(2, "train", "lora", *_flags(dataset, tmp_path, BATCH // 2), "--resume")
    assert "resumed from" in done.stdout + done.stderr
    assert_same_weights(one, tmp_path / "o.safetensors")



def test_an_embedding_trained_by_two_processes_is_the_one_of_one(shapes_dataset, tmp_path):
    from gouache.train.embedding import EmbeddingTrainConfig, train_embedding

    data = shapes_dataset("processes-ti", 6, colour="yellow", shape="circle", template="a <sks> on a {background} background")
    flags = {"token": "<sks>", "init_word": "circle", "num_vectors": 2, "steps": 3, "lr": 0.05, "warmup_steps": 1}
    one = train_embedding(EmbeddingTrainConfig(dataset=data, out_dir=tmp_path / "one", batch_size=4, **flags),
                          log=lambda s: None)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    launch(2, "train", "embedding", str(data), "--out", str(tmp_path / "two"), "--batch-size", "2", *argv)
    assert_same_weights(one, tmp_path / "two" / one.name)
