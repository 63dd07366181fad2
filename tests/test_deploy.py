"""``deploy/``: the KubeRay and Ray Job examples parse, and every ``gouache`` command they run is
one gouache's command line takes. (They are not run: there is no Kubernetes here.)"""

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
    assert {("raycluster.yaml", "serve"), ("rayjob.yaml", "batch"), ("ray-job-submit.sh", "batch")} <= named


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_the_yaml_parses_as_kuberay_resources(name):
    yaml = pytest.importorskip("yaml")
    resource = yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))
    assert resource["apiVersion"] == "ray.io/v1" and resource["kind"] in ("RayCluster", "RayJob")
    cluster = resource["spec"].get("rayClusterSpec", resource["spec"])
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
