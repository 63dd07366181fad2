"""Tiny language models and OpenAI-compatible servers for the prompt-expansion tests, written offline.

* :func:`write_random_lm`: a random-weight ``LlamaForCausalLM`` (hidden size 32, one layer) with a
  word-level tokenizer and a chat template, as ``save_pretrained`` writes them. Its replies are
  gibberish, the same every time (greedy decoding).
* :func:`write_reply_lm`: the same architecture with its weights *set by hand* so that, greedily,
  it always answers one fixed text: the embeddings are one-hot, attention and MLP add nothing, and
  the output layer maps each token to the next one of the reply (a bigram chain that starts at the
  chat template's last token ``assistant:`` and ends with ``</s>``). A real model path, a known
  answer: the happy path through a real server is then deterministic.
* :class:`CannedServer`: a stdlib HTTP server on loopback that answers ``/v1/chat/completions`` and
  ``/v1/models`` as told (a reply, an HTTP error, silence, garbage) and records what it was sent.
* :func:`start_transformers_serve`: ``transformers serve FOLDER`` as a subprocess on a free loopback
  port, waited for at ``/health``.

Test modules load this file by path (pytest's importlib mode keeps test folders off ``sys.path``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# what the reply LM answers: gouache-tiny's world, so the image it leads to can be judged
REPLY = '{"prompt": "a red circle on a blue background, outline style", "negative_prompt": "blurry"}'
EXPECTED = ("a red circle on a blue background, outline style", "blurry")
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
WORDS = "a castle dog on the hill red blue sits in photo of , . : light".split()


def _tokenizer(words: list[str], chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys(["<unk>", "<pad>", "<s>", "</s>", "assistant:", "user:", *words]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins the words with single spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer, vocab


def _llama(vocab_size: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, pad_token_id=1,
                         bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def write_random_lm(folder: Path, chat_template: bool = True) -> Path:
    """A random-weight tiny Llama and its tokenizer (with a chat template unless told otherwise)."""
    tokenizer, vocab = _tokenizer(WORDS, chat_template)
    model = _llama(len(vocab))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_reply_lm(folder: Path, reply: str = REPLY) -> Path:
    """A tiny Llama whose greedy answer to any chat is ``reply`` (its whitespace-split words must differ)."""
    import torch

    words = reply.split(" ")
    assert len(set(words)) == len(words), "a bigram chain needs each word once"
    tokenizer, vocab = _tokenizer(words)
    model = _llama(len(vocab))
    size = len(vocab)
    chain = ["assistant:", *words, "</s>"]
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :size] = torch.eye(size)  # token i: the i-th axis
        for layer in model.model.layers:  # nothing but the token itself reaches the output
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = model.lm_head.weight
        head.zero_()
        for token, i in vocab.items():
            head[vocab["</s>"], i] = 1.0  # off the chain: stop
        for current, following in zip(chain, chain[1:]):
            head[:, vocab[current]] = 0.0
            head[vocab[following], vocab[current]] = 1.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_answer(content: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": "canned",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}


class CannedServer:
    """An OpenAI-compatible server in a thread that answers as ``behave`` says:

    ``("reply", text)``, ``("status", code, json body)``, ``("sleep", seconds)``, ``("raw", bytes)``.
    ``requests`` holds ``(method, path, headers, parsed body)`` of each request."""

    def __init__(self):
        self.behave: tuple = ("reply", REPLY)
        self.models = ["canned-model"]
        self.requests: list[tuple[str, str, dict, object]] = []
        self.stop = threading.Event()
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                canned.requests.append(("GET", self.path, dict(self.headers), None))
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in canned.models]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                canned.requests.append(("POST", self.path, dict(self.headers), body))
                kind, *args = canned.behave
                if kind == "reply":
                    self._send(200, chat_answer(args[0]))
                elif kind == "status":
                    self._send(args[0], args[1])
                elif kind == "sleep":
                    canned.stop.wait(args[0])
                    self._send(200, chat_answer(REPLY))
                elif kind == "raw":
                    self._raw(200, args[0])

            def _send(self, code: int, body) -> None:
                self._raw(code, json.dumps(body).encode())

            def _raw(self, code: int, data: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def posts(self) -> list:
        return [r for r in self.requests if r[0] == "POST"]

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def start_transformers_serve(folder: Path, log: Path, wait: float = 240.0):
    """``transformers serve FOLDER`` on 127.0.0.1 (offline, CPU): ``(process, base URL)`` once ``/health``
    answers; the caller terminates the process."""
    port = free_port()
    executable = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = open(log, "wb")
    process = subprocess.Popen([str(executable), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
                                "--device", "cpu", "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT,
                               env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            out.close()
            raise RuntimeError(f"transformers serve did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.25)


def stop_process(process) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

