"""``gouache serve --ray``'s options and its one-line errors: a bad address, a cluster that is not
there, Ray not installed. Nothing here starts Ray."""

import socket
import sys
import time

import pytest

from gouache.errors import InvalidArgument
from gouache.server.rayserve.cluster import RayOptions


@pytest.mark.parametrize("replicas, scaling", [
    ("1", {"num_replicas": 1}),
    ("3", {"num_replicas": 3}),
    ("2-2", {"num_replicas": 2}),
    ("1-4", {"autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 1}}),
])
def test_replicas_become_serves_replica_count_or_autoscaling_range(replicas, scaling):
    assert RayOptions("local", replicas).validate().scaling() == scaling


@pytest.mark.parametrize("address, replicas, message", [
    ("local", "0", "`--replicas` must be a number N or a range MIN-MAX"),
    ("local", "4-2", "got '4-2'"),
    ("local", "two", "got 'two'"),
    ("local", "1-", "got '1-'"),
    ("local", "-3", "got '-3'"),
    ("local", "1000", "MAX <= 256"),
    ("head:6379", "1", "`--ray` must be `local`, `auto` or ray://HOST:PORT, got 'head:6379'"),
    ("ray://head", "1", "must be ray://HOST:PORT"),
    ("ray://head:99999", "1", "must be ray://HOST:PORT"),
])
def test_bad_options_are_named(address, replicas, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        RayOptions(address, replicas).validate()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_is_one_line_and_exit_1(run):
    address = f"ray://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    code, out, err = run("serve", "--ray", address, "--replicas", "2")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"gouache: error: cannot reach the Ray cluster at {address}: ")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("argv, code, message", [
    (["--ray", "head:6379"], 1, "gouache: error: `--ray` must be `local`, `auto` or ray://HOST:PORT"),
    (["--ray", "--replicas", "0"], 1, "gouache: error: `--replicas` must be a number N or a range MIN-MAX"),
    (["--replicas", "2"], 2, "gouache serve: error: --replicas needs --ray"),
])
def test_bad_command_lines_are_one_line(run, argv, code, message):
    got, out, err = run("serve", *argv)
    assert got == code and err.startswith(message) and err.count("\n") == 1


def test_without_ray_one_line_says_how_to_install_it(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    code, out, err = run("serve", "--ray", "auto")
    assert code == 1
    assert err == "gouache: error: `--ray` needs Ray Serve, which is not installed: pip install 'gouache[ray]' " \
                  "(or: pip install 'ray[serve]')\n"
