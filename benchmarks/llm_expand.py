"""What prompt expansion costs besides the LLM's own thinking, on tiny models written here (no real
weights are reachable offline): reading hostile replies, a local transformers folder, and a real
OpenAI-compatible server (``transformers serve``) on loopback. Best of ``--repeats`` runs:

    python benchmarks/llm_expand.py [--repeats 5] [--no-serve]

The tiny LM is tests/prompts/llm_fixtures.py's ``write_reply_lm``: a one-layer Llama whose weights
are set so that it always answers the same JSON prompt (12 tokens).
"""

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gouache.prompts.expand import expand_prompt, parse_reply  # noqa: E402
from gouache.prompts.llm import LLMReplyError, LLMSettings, open_llm  # noqa: E402

_spec = importlib.util.spec_from_file_location("llm_fixtures", HERE.parent / "tests" / "prompts" / "llm_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

HOSTILE = {"200,000 '{'": "{" * 200_000, "50,000 '{\"a\": '": '{"a": ' * 50_000,
           "30,000 small objects, no prompt": '{"k": 1} ' * 30_000}


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def refused(text):
    try:
        parse_reply(text)
    except LLMReplyError:
        return
    raise AssertionError("a hostile reply was read as a prompt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-serve", action="store_true", help="skip transformers serve")
    args = parser.parse_args()
    for name, text in HOSTILE.items():
        print(f"parse_reply, {name} (read up to 50,000 chars): {1000 * best(lambda: refused(text), args.repeats):.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        folder = fx.write_reply_lm(Path(tmp) / "reply-lm")
        started = time.perf_counter()
        with open_llm(LLMSettings(str(folder))) as llm:
            print(f"local folder: load {time.perf_counter() - started:.2f} s")
            seconds = best(lambda: expand_prompt("a castle", llm), args.repeats)
            print(f"local folder: expand_prompt (12 new tokens) {1000 * seconds:.0f} ms")
        if args.no_serve:
            return
        started = time.perf_counter()
        process, url = fx.start_transformers_serve(folder, Path(tmp) / "serve.log")
        try:
            print(f"transformers serve: ready at /health after {time.perf_counter() - started:.1f} s")
            expand_prompt("a castle", url)  # the first asks /v1/models for the model's name
            seconds = best(lambda: expand_prompt("a castle", url, model=str(folder)), args.repeats)
            print(f"transformers serve: expand_prompt over HTTP (12 new tokens) {1000 * seconds:.0f} ms")
        finally:
            fx.stop_process(process)


if __name__ == "__main__":
    main()
