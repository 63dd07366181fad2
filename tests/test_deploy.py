"""``deploy/``: the KubeRay and Ray Job examples parse, every ``gouache`` command they run is one
gouache's command line takes, and the RayService's Serve application is gouache's builder with args
it takes. (They are not run: there is no Kubernetes here; tests/server/rayserve/test_app.py runs the
builder under a local ``serve.run``.)"""

import re
import shlex
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
# a `gouache COMMAND ARGS` line inside YAML or shell: it ends where the shell's syntax or a quote starts
COMMAND = re.compile(r"\bgouache ([a-z][a-z-]*)((?: [^ \n\"'`>&;|)]+)+)")


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in sorted(DEPLOY.iterdir()):
        lines = path.read_text(encoding="utf-8").splitlines()
        code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))  # comments are prose
        found += [(path.name, [m[1], *shlex.split(m[2])]) for m in COMMAND.finditer(code)
                  if m[1] in ("serve", "batch")]  # not a comment's words ("# one gouache replica per pod")
    return found


def test_the_examples_name_gouache_commands():
    named = {(name, argv[0]) for name, argv in _commands()}
    assert {("rayjob.yaml", "batch"), ("ray-job-submit.sh", "batch")} <= named


@pytest.mark.parametrize("name", ["rayservice.yaml", "rayjob.yaml"])
def test_the_yaml_parses_as_kuberay_resources(name):
    yaml = pytest.importorskip("yaml")
    resource = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    assert resource["apiVersion"] == "ray.io/v1" and resource["kind"] in ("RayService", "RayJob")
    cluster = resource["spec"].get("rayClusterSpec") or resource["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert all(group["template"]["spec"]["containers"] for group in cluster["workerGroupSpecs"])
    if resource["kind"] == "RayJob":
        assert resource["spec"]["entrypoint"].startswith("gouache batch ")


@pytest.mark.parametrize("where, argv", _commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_each_command_is_one_gouache_takes(where, argv):
    from gouache.cli import COMMANDS, build_parser

    if argv[0] not in COMMANDS:
        pytest.skip(f"`gouache {argv[0]}` is not in this checkout (it comes with issue #24's batch branch)")
    args = build_parser().parse_args(argv)
    if argv[0] == "serve":
        from gouache.server.rayserve.cluster import RayOptions

        assert args.ray == "auto"
        RayOptions(args.ray, args.replicas or "1").validate()  # the --ray and --replicas it gives are good
    else:
        assert args.ray == "auto" and args.out


def _serve_config() -> tuple[dict, dict]:
    """The RayService, and its serveConfigV2 (a YAML document in a string, as KubeRay takes it)."""
    yaml = pytest.importorskip("yaml")
    service = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text(encoding="utf-8"))
    return service, yaml.safe_load(service["spec"]["serveConfigV2"])


def test_the_rayservice_serves_on_the_port_its_pods_open():
    service, config = _serve_config()
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:  # KubeRay's serve Service reaches Serve's proxy on each pod by the port named `serve`
        ports = {p["name"]: p["containerPort"] for c in group["template"]["spec"]["containers"] for p in c["ports"]}
        assert ports["serve"] == config["http_options"]["port"]
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # KubeRay deploys through it
    assert [app["route_prefix"] for app in config["applications"]] == ["/"]


def test_the_rayservice_names_gouaches_builder_with_args_it_takes(tmp_path):
    """The import path imports and is Serve's application builder; its args build the application
    (the auth file, a Kubernetes secret there, is a temporary one here)."""
    import importlib
    import inspect

    pytest.importorskip("ray.serve", reason="the Serve application needs Ray Serve: pip install 'gouache[ray]'")
    from ray.serve import Application

    _, config = _serve_config()
    (app,) = config["applications"]
    module, _, name = app["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), name)
    assert list(inspect.signature(builder).parameters) == ["args"]
    users = tmp_path / "users"
    users.write_text("ann:a-long-password\n", encoding="utf-8")
    args = {**app["args"], "api_auth_file": str(users), "out": str(tmp_path / "outputs")}
    assert isinstance(builder(args), Application)
