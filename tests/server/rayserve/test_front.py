"""``gouache serve --ray`` on a real local Ray cluster: two Ray Serve replicas of gouache-tiny behind
the unchanged API, driven by the ``webuiapi`` client. The cluster is started once for the module
(loopback only, usage stats off) and stopped at its end; every wait is bounded."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

pytest.importorskip("ray.serve", reason="`gouache serve --ray` needs Ray Serve: pip install 'gouache[ray]'")
webuiapi = pytest.importorskip("webuiapi")
requests = pytest.importorskip("requests")

from gouache.tiny.judge import read_image  # noqa: E402

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory, serve, gouache_home):
    """``(base URL, RayGenerator)``: the API on a free loopback port, its jobs on 2 replicas."""
    from gouache.server.app import create_app
    from gouache.server.config import ServerConfig
    from gouache.server.rayserve.cluster import RayOptions, serve_on_ray

    config = ServerConfig(host="127.0.0.1", out=str(tmp_path_factory.mktemp("outputs")), ui=False, queue_size=32)
    options = RayOptions("local", "2", cpus_per_replica=1, stall_timeout=60, start_timeout=120)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        with serve_on_ray(config, options) as generator:
            yield serve(create_app(config, generator=generator, workers=2)), generator


def _api(url: str):
    return webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1", sampler="Euler a", steps=2)


def _txt2img(url: str, seed: int, steps: int = 2):
    """One request: the picture, or the 503's message (what a client sees of a lost replica)."""
    try:
        return _api(url).txt2img(prompt=PROMPT, width=64, height=64, seed=seed, cfg_scale=5, steps=steps).image
    except RuntimeError as err:  # webuiapi: "Request failed with status 503 ..."
        return str(err)


def test_the_cluster_is_loopback_only(ray_server):
    import ray

    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


def test_two_replicas_answer_16_concurrent_requests(ray_server):
    url, generator = ray_server
    before = dict(generator.jobs_by_replica)
    with ThreadPoolExecutor(16) as pool:
        images = list(pool.map(lambda seed: _txt2img(url, seed), range(16), timeout=240))
    assert all(not isinstance(image, str) and image.size == (64, 64) for image in images), images
    assert [read_image(image).shape for image in images].count("circle") >= 12  # the tiny model, at 2 steps
    answered = {pid: n - before.get(pid, 0) for pid, n in generator.jobs_by_replica.items()}
    assert len([pid for pid, n in answered.items() if n > 0]) == 2, answered  # both replicas worked
    assert sum(answered.values()) == 16


def test_progress_and_interrupt_reach_the_replica_running_the_job(ray_server):
    url, _ = ray_server
    result = {}
    job = threading.Thread(target=lambda: result.update(answer=_api(url).txt2img(
        prompt=PROMPT, width=64, height=64, seed=1, steps=150)))
    job.start()
    deadline = time.monotonic() + 60
    while True:  # the job's steps, as the replica streams them
        state = requests.get(f"{url}/sdapi/v1/progress", timeout=10).json()
        if state["state"]["sampling_step"] >= 2:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["state"]["job"] == "txt2img" and state["state"]["sampling_steps"] == 150 and state["progress"] > 0
    asked = time.monotonic()
    requests.post(f"{url}/sdapi/v1/interrupt", timeout=10)
    job.join(60)
    assert not job.is_alive() and time.monotonic() - asked < 30
    answer = result["answer"]  # answered normally, with what it had: no image (A1111's)
    assert answer.images == [] and answer.info["interrupted"] is True


def test_a_killed_replica_costs_no_request(ray_server):
    url, generator = ray_server
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_txt2img, url, seed, 12) for seed in range(8)]
        deadline = time.monotonic() + 60
        while not any(generator.jobs_by_replica.values()) or not _running(url):
            assert time.monotonic() < deadline, "no job started"
            time.sleep(0.1)
        os.kill(generator.pid(), signal.SIGKILL)
        done, hanging = wait(futures, timeout=240)
    assert not hanging, f"{len(hanging)} requests hang"
    answers = [f.result() for f in done]
    failed = [a for a in answers if isinstance(a, str)]
    assert all("503" in a and "replica" in a for a in failed), failed
    assert len(answers) - len(failed) >= 6, failed  # one job at most per replica lost twice
    image = _txt2img(url, 99)  # Serve replaced it: the server goes on
    assert not isinstance(image, str) and image.size == (64, 64)


def _running(url: str) -> bool:
    return requests.get(f"{url}/sdapi/v1/progress", timeout=10).json()["state"]["sampling_step"] > 0
