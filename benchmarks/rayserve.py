"""``gouache serve`` against ``gouache serve --ray --replicas N``: wall time of concurrent A1111
``txt2img`` requests (the ``webuiapi`` client) on gouache-tiny, each server started as a user
starts it and stopped with Ctrl-C.

    python benchmarks/rayserve.py --replicas 1 2 --requests 16 --steps 20

Each side: start the server on a free loopback port, wait for it, one untimed warm-up request,
then ``--requests`` requests at once (seeds 0..N-1); prints seconds, images/s and the speed-up
against plain ``gouache serve``. On a machine with C cores, N replicas of 1 thread each can use
min(N, C) of them: the gain is the cores a single torch process leaves idle at 64×64.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the plain server")
    args = parser.parse_args()
    rows = [("gouache serve", *side([], args))]
    rows += [(f"--ray --replicas {n}", *side(["--ray", "--replicas", str(n)], args)) for n in args.replicas]
    base = rows[0][1]
    print(f"\n{args.requests} concurrent txt2img, gouache-tiny 64x64, {args.steps} steps, {os.cpu_count()} CPUs")
    print("| server | seconds | images/s | speed-up |\n| --- | --- | --- | --- |")
    for name, seconds, images in rows:
        print(f"| `{name}` | {seconds:.1f} | {images / seconds:.2f} | {base / seconds:.2f}x |")


def side(flags: list[str], args) -> tuple[float, int]:
    import webuiapi

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "RAY_USAGE_STATS_ENABLED": "0"}
    server = subprocess.Popen([sys.executable, "-m", "gouache", "serve", "--nowebui", "--port", str(port), *flags],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        api = webuiapi.WebUIApi(baseurl=f"http://127.0.0.1:{port}/sdapi/v1", sampler="Euler a", steps=args.steps)
        _wait(port, server, 300)
        api.txt2img(prompt="a red circle on a blue background", width=64, height=64, seed=0)  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            results = list(pool.map(lambda seed: api.txt2img(prompt="a red circle on a blue background", width=64,
                                                             height=64, seed=seed), range(args.requests)))
        seconds = time.perf_counter() - started
        assert all(r.image.size == (64, 64) for r in results)
        return seconds, len(results)
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn stops, then the Ray cluster
        stopped = time.perf_counter()
        server.wait(120)
        print(f"{' '.join(flags) or 'plain'}: stopped in {time.perf_counter() - stopped:.1f} s", file=sys.stderr)


def _wait(port: int, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the server did not open port {port} in {timeout} s")


if __name__ == "__main__":
    main()
