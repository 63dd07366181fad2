"""``gouache batch --ray`` on a real local Ray cluster (2 CPUs, loopback, no dashboard): the same
bytes as one machine makes, and a worker killed mid-run costs nothing but time."""

import json
import os
import signal

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

PROMPTS = ["a red circle on a blue background", "a green square on a yellow background",
           "a blue triangle on a red background", "a yellow circle on a green background"]


@pytest.fixture(scope="module")
def cluster(gouache_home):
    """Ray in this process: its workers inherit this environment (src on PYTHONPATH, $GOUACHE_HOME, fp32)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """16 images: 8 lines of 2 (seed -1 on half of them: derived, so the same on both sides)."""
    path = tmp_path_factory.mktemp("jobs") / "jobs.jsonl"
    lines = [{"prompt": PROMPTS[k % 4], "steps": 3, "batch-size": 2, **({"seed": 100 + k} if k % 2 else {})}
             for k in range(8)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def local_out(jobs, tmp_path_factory):
    from gouache.cli import main

    out = tmp_path_factory.mktemp("local")
    assert main(["batch", str(jobs), "--out", str(out)]) == 0
    return out


def images(out):
    """file -> (pixels, infotext)."""
    from PIL import Image

    from gouache.metadata.png import read_infotext

    return {p.name: (Image.open(p).tobytes(), read_infotext(p)) for p in sorted(out.glob("*.png"))}


def entries(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_two_actors_make_the_bytes_one_machine_makes(cluster, jobs, local_out, tmp_path, run):
    code, out, err = run("batch", jobs, "--out", tmp_path, "--ray", "--workers", 2, "--threads-per-worker", 1)
    assert code == 0, err
    assert "16 made" in out
    on_ray, local = images(tmp_path), images(local_out)
    assert len(on_ray) == 16 and on_ray.keys() == local.keys()
    for name in local:
        assert on_ray[name] == local[name], name
    assert entries(tmp_path) == entries(local_out)


def test_a_killed_worker_costs_only_its_images_which_are_made_again(cluster, jobs, local_out, tmp_path):
    from gouache.batch.ray_runner import ray_results
    from gouache.batch.run import run_batch
    from gouache.cli.batch import shared_flags
    from gouache.cli.batch_jobs import read_jobs
    from gouache.cli import build_parser

    args = build_parser().parse_args(["batch", str(jobs), "--out", str(tmp_path)])
    batch = read_jobs(str(jobs), args, shared_flags())
    killed = []

    def runner(tasks):
        for result in ray_results(tasks, workers=2, threads=1):
            if not killed:  # the worker that made the first image: SIGKILL while it makes the next ones
                pid = int(result.worker.rpartition(":")[2])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            yield result

    summary = run_batch(batch, tmp_path, runner)
    assert killed and summary.made == 16 and summary.failed == 0
    made = images(tmp_path)
    assert made == images(local_out)  # none missing, none twice, the same bytes
    listed = [(e["job"], e["image"]) for e in entries(tmp_path)]
    assert len(listed) == len(set(listed)) == 16 and all(e["status"] == "ok" for e in entries(tmp_path))
