"""``gouache.server.rayserve.app:build``, the Serve application of ``deploy/rayservice.yaml``, run
for real: the builder's application under ``serve.run`` on a local Ray cluster (loopback only, no
dashboard, usage stats off), Serve's own HTTP proxy on a free 127.0.0.1 port, and a real HTTP
client. (A RayService runs the same builder on Kubernetes; that is not run here.) Its args' errors
need no Ray."""

import socket
import threading
import time

import pytest

from gouache.errors import GouacheError
from gouache.tiny.judge import read_image

PROMPT = "a red circle on a blue background"


@pytest.mark.parametrize("args, message", [
    ({"replica": 2}, "unknown `args` of gouache's Serve application: replica; the known ones are: host, model"),
    ({"port": 8000}, "unknown `args` of gouache's Serve application: port"),
    ({"address": "auto"}, "unknown `args` of gouache's Serve application: address"),
    ({"replicas": 0}, "`--replicas` must be a number N or a range MIN-MAX"),
    ({"replicas": "4-2"}, "got '4-2'"),
    ({"max_steps": "50"}, "`max_steps` must be a whole number, got '50'"),
    ({"max_steps": 0}, "`max_steps` must be a positive whole number, got 0"),
    ({"ui": "yes"}, "`ui` must be true or false, got 'yes'"),
    ({"stall_timeout": -1}, "`stall_timeout` must be a positive number, got -1"),
    ({"front_cpus": 100}, "`front_cpus` must be from 0 to 64, got 100"),
    ({"model": "no-such-model"}, "unknown model 'no-such-model'; available: gouache-tiny"),
    ({"api_auth_file": "/no/such/file"}, "`--api-auth-file` '/no/such/file' cannot be read"),
    (["replicas", 2], "the application's `args` must be a mapping of settings"),
])
def test_bad_args_are_one_line_before_ray(args, message):
    from gouache.server.rayserve.app import build

    with pytest.raises(GouacheError) as caught:
        build(args)
    text = str(caught.value)
    assert text.startswith("gouache's Serve application args: ") and message in text and "\n" not in text


def test_args_name_the_settings_of_gouache_serve(tmp_path):
    from gouache.server.rayserve.app import ServiceArgs

    users = tmp_path / "users"
    users.write_text("ann:secret\n", encoding="utf-8")
    service = ServiceArgs.parse({"replicas": 3, "max_steps": 40, "api_auth_file": str(users), "ui": False})
    assert service.ray.scaling() == {"num_replicas": 3}
    assert (service.server.max_steps, service.server.ui, service.server.credentials()) == (40, False, {"ann": "secret"})
    assert service.server.host == "0.0.0.0"  # a RayService's proxy serves the pod's network
    assert ServiceArgs.parse({"replicas": "1-4"}).ray.scaling()["autoscaling_config"]["max_replicas"] == 4


@pytest.mark.parametrize("version, refused", [("2.40.0", True), ("2.46.1", True), ("2.47.0", False),
                                               ("2.60.0", False), ("3.0.0rc1", False)])
def test_an_older_ray_is_one_line(version, refused):
    from gouache.server.rayserve.app import _check_ray_version
    from gouache.server.rayserve.cluster import RayUnavailable

    if refused:
        with pytest.raises(RayUnavailable, match=rf"needs Ray >= 2.47 .*; this is Ray {version}: pip install -U"):
            _check_ray_version(version)
    else:
        _check_ray_version(version)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service_url(tmp_path_factory, gouache_home):
    """The builder's application on a local cluster: the base URL of Serve's proxy (127.0.0.1)."""
    pytest.importorskip("ray.serve", reason="the Serve application needs Ray Serve: pip install 'gouache[ray]'")
    from gouache.server.rayserve.app import build
    from gouache.server.rayserve.cluster import _loopback_only

    port = _free_port()
    args = {"host": "127.0.0.1", "out": str(tmp_path_factory.mktemp("outputs")), "replicas": 1, "queue_size": 8,
            "front_cpus": 0.5, "cpus_per_replica": 1, "start_timeout": 120}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        with _loopback_only() as ray:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            from ray import serve

            try:
                serve.start(http_options={"host": "127.0.0.1", "port": port})
                started = _bounded(lambda: serve.run(build(args), name="gouache", route_prefix="/"), 180)
                assert started, "the application did not start in 180 s"
                yield f"http://127.0.0.1:{port}"
            finally:
                serve.shutdown()
                ray.shutdown()


def _bounded(call, seconds: float) -> bool:
    """Run ``call`` in a thread; whether it returned within ``seconds`` (its error is raised here)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as err:  # noqa: BLE001 - raised again in the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if "error" in outcome:
        raise outcome["error"]
    return "value" in outcome


def _api(url: str):
    webuiapi = pytest.importorskip("webuiapi")
    return webuiapi.WebUIApi(baseurl=f"{url}/sdapi/v1", sampler="Euler a", steps=8)


def test_txt2img_through_serves_proxy_makes_the_image_asked_for(service_url):
    answer = _api(service_url).txt2img(prompt=PROMPT, width=64, height=64, seed=3, cfg_scale=5)
    assert answer.image.size == (64, 64)
    seen = read_image(answer.image)
    assert (seen.colour, seen.shape, seen.background) == ("red", "circle", "blue")
    assert answer.info["seed"] == 3 and "Steps: 8" in answer.info["infotexts"][0]


def test_progress_and_interrupt_reach_the_running_job(service_url):
    httpx = pytest.importorskip("httpx")
    result = {}
    job = threading.Thread(target=lambda: result.update(answer=_api(service_url).txt2img(
        prompt=PROMPT, width=64, height=64, seed=1, steps=150)))
    job.start()
    deadline = time.monotonic() + 60
    while True:  # /progress is answered while the job runs: Serve does not queue it behind the job
        state = httpx.get(f"{service_url}/sdapi/v1/progress", timeout=10).json()
        if state["state"]["sampling_step"] >= 2:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["state"]["job"] == "txt2img" and state["state"]["sampling_steps"] == 150 and state["progress"] > 0
    httpx.post(f"{service_url}/sdapi/v1/interrupt", timeout=10)
    job.join(60)
    assert not job.is_alive()
    assert result["answer"].images == [] and result["answer"].info["interrupted"] is True


def test_the_web_ui_and_the_loopback_guard_are_the_front_s(service_url):
    httpx = pytest.importorskip("httpx")
    page = httpx.get(f"{service_url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    ui = httpx.get(f"{service_url}/config", timeout=30).json()  # the Gradio app the page draws
    assert ui["title"] == "gouache"
    # `host: 127.0.0.1` in the args: a request naming another host (DNS rebinding) is refused
    refused = httpx.get(f"{service_url}/sdapi/v1/progress", headers={"Host": "attacker.example"}, timeout=10)
    assert refused.status_code == 421
