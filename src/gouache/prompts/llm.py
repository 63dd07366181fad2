"""Language models that write prompts: an OpenAI-compatible chat endpoint, or a local transformers folder.

An LLM is named by one string (``--llm``, ``gouache serve --llm``, ``$GOUACHE_LLM``):

* ``http://HOST:PORT`` (or ``https://``): any server with OpenAI's ``POST /v1/chat/completions``
  (llama.cpp's ``llama-server``, Ollama, vLLM, LM Studio, ``transformers serve``). ``…/v1`` and a full
  ``…/v1/chat/completions`` are read too. The model is ``--llm-model`` (``$GOUACHE_LLM_MODEL``), else
  the first one the server lists at ``GET /v1/models``; the API key, if any, comes from
  ``$GOUACHE_LLM_API_KEY`` or ``$OPENAI_API_KEY``.
* a folder of a causal language model as ``save_pretrained`` writes it (``config.json``, the weights,
  the tokenizer), or the name of one under ``$GOUACHE_HOME/llm/``: loaded with ``AutoModelForCausalLM``
  and ``AutoTokenizer``, offline, and decoded greedily (the same idea gives the same reply).

Both answer :meth:`chat` (a list of OpenAI-style messages → the reply's text) within ``timeout``
seconds and ``max_tokens`` new tokens; what goes wrong is one :class:`LLMError` line.

>>> llm = open_llm(LLMSettings("http://127.0.0.1:8080"))                        # doctest: +SKIP
>>> llm.chat([{"role": "user", "content": "Say hi"}])                           # doctest: +SKIP
'Hi!'
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gouache.errors import GouacheError, InvalidArgument, ModelLoadError, check_int, check_number

ENV_LLM = "GOUACHE_LLM"
ENV_MODEL = "GOUACHE_LLM_MODEL"
ENV_KEYS = ("GOUACHE_LLM_API_KEY", "OPENAI_API_KEY")  # the first one set is sent as a bearer token
LLM_KIND = "llm"  # $GOUACHE_HOME/llm/<name>/
MAX_TIMEOUT = 600.0
MAX_TOKENS = 4096
MAX_REPLY_BYTES = 4 * 2**20  # of an endpoint's answer; a chat reply is a few kB
SHOWN = 200  # characters of an endpoint's error text shown in a message


class LLMError(GouacheError):
    """The LLM gave no usable answer (the server answers 503)."""


class LLMUnavailable(LLMError):
    """It could not be reached, did not answer in time, or answered with an HTTP error."""


class LLMReplyError(LLMError):
    """It answered, but not with what was asked for (no prompt in the reply, not OpenAI's format)."""


@dataclass
class LLMSettings:
    """Which LLM and how long it may take.

    >>> LLMSettings("http://127.0.0.1:8080", timeout=30).validate()
    """

    llm: str | None = None  # a URL, a folder, or a name under $GOUACHE_HOME/llm; None: $GOUACHE_LLM
    model: str | None = None  # the endpoint's model name; None: $GOUACHE_LLM_MODEL, else the first it lists
    timeout: float = 60.0  # seconds for the whole answer (connect, generate, read)
    max_tokens: int = 300  # new tokens of the reply
    device: str = "cpu"  # a local model's

    def validate(self) -> None:
        if self.llm is not None and not isinstance(self.llm, str):
            raise InvalidArgument(f"`llm` must be a URL, a folder or a name, got {type(self.llm).__name__}")
        if self.model is not None and not isinstance(self.model, str):
            raise InvalidArgument(f"`llm_model` must be a model name, got {type(self.model).__name__}")
        if isinstance(self.timeout, (int, float)) and not isinstance(self.timeout, bool) and self.timeout <= 0:
            raise InvalidArgument(f"`llm_timeout` must be more than 0 seconds, got {self.timeout!r}")
        check_number("llm_timeout", self.timeout, 0, MAX_TIMEOUT, " (seconds)")
        check_int("max_tokens", self.max_tokens, 1, MAX_TOKENS)

    def named(self) -> str:
        """``llm``, else ``$GOUACHE_LLM``; neither is one error that says how to name one."""
        text = (self.llm if self.llm is not None else os.environ.get(ENV_LLM, "")).strip()
        if not text:
            raise InvalidArgument(f"no LLM to write the prompt: pass --llm URL|PATH (an OpenAI-compatible server "
                                  f"such as http://127.0.0.1:8080, or a transformers folder) or set ${ENV_LLM}")
        return text


def is_url(text: str) -> bool:
    return "://" in text


def llm_dir() -> Path:
    from gouache.models.home import models_dir

    return models_dir(LLM_KIND)


def list_llms() -> dict[str, Path]:
    """The folders under ``$GOUACHE_HOME/llm`` that hold a model (a ``config.json``), by name."""
    folder = llm_dir()
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and (p / "config.json").is_file()}


def find_llm(text: str) -> str | Path:
    """The endpoint URL (checked) or the model folder ``text`` names: an existing path, else a name
    under ``$GOUACHE_HOME/llm``; a folder that is no causal language model is a :class:`ModelLoadError`.

    >>> find_llm("http://127.0.0.1:8080/v1")
    'http://127.0.0.1:8080/v1'
    """
    if is_url(text):
        return check_url(text)
    from gouache.models.names import Names

    listed = list_llms()
    names = Names("LLM", [list(listed)], lambda name: [[name]], str)
    found = names.resolve(text, lambda path: path, (), f" (put causal-LM folders in {llm_dir()}, or give a URL)")
    folder = found if isinstance(found, Path) else listed[found]
    check_causal_lm(folder)
    return folder


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"the LLM URL must be http://HOST[:PORT] or https://…, got {url[:SHOWN]!r}")
    return url


def check_causal_lm(folder: Path) -> None:
    """A folder transformers reads as a causal LM with a tokenizer; checked from its config, without
    loading the weights (``gouache serve --llm`` checks at start)."""
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder}: not a model folder (no config.json); --llm takes a transformers "
                             "causal-LM folder or an http:// URL")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{folder}/config.json cannot be read: {err}") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"{folder}: not a causal language model (its config.json says model_type {kind!r}); "
                             "--llm takes a text-generation model such as Llama, Qwen, Mistral, Gemma or GPT-2")


def open_llm(settings: LLMSettings, label: str | None = None):
    """The :class:`ChatEndpoint` or :class:`LocalLM` that ``settings`` name (a local one is loaded
    now; use it in a ``with`` block to release it). ``label`` is how messages call it (the server's
    clients read "the server's LLM", not its address)."""
    settings.validate()
    found = find_llm(settings.named())
    if isinstance(found, str):
        return ChatEndpoint(found, settings.model or os.environ.get(ENV_MODEL) or None, settings.timeout,
                            settings.max_tokens, label)
    return LocalLM(found, settings.device, settings.timeout, settings.max_tokens, label)


# -- an OpenAI-compatible endpoint -----------------------------------------------------------------


def endpoint_urls(url: str) -> tuple[str, str]:
    """``(chat completions URL, models URL)`` of a server's base URL, ``…/v1`` or full URL.

    >>> endpoint_urls("http://127.0.0.1:8080")
    ('http://127.0.0.1:8080/v1/chat/completions', 'http://127.0.0.1:8080/v1/models')
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
    elif not path.endswith("/v1"):
        path += "/v1"
    at = lambda tail: urlunsplit((parts.scheme, parts.netloc, f"{path}/{tail}", parts.query, ""))  # noqa: E731
    return at("chat/completions"), at("models")


class ChatEndpoint:
    """OpenAI's chat completions over HTTP, with the standard library (``urllib``); no streaming."""

    def __init__(self, url: str, model: str | None = None, timeout: float = 60.0, max_tokens: int = 300,
                 label: str | None = None):
        self.url = check_url(url)
        self.chat_url, self.models_url = endpoint_urls(url)
        self.model, self.timeout, self.max_tokens = model, timeout, max_tokens
        self.label = label or f"the LLM at {url}"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        """Nothing to release: each call is one HTTP request."""

    def chat(self, messages: list[dict]) -> str:
        """The reply's text to ``messages``, greedy where the server honours ``temperature: 0``."""
        deadline = time.monotonic() + self.timeout
        model = self.model or self._first_model(deadline)
        body = {"model": model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0,
                "stream": False}
        answer = self._request(self.chat_url, body, deadline)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise LLMReplyError(f"{self.label} did not answer in OpenAI's chat format (no "
                                f"choices[0].message.content): {_shown(json.dumps(answer))}")
        return content

    def _first_model(self, deadline: float) -> str:
        """The first model ``GET /v1/models`` lists (llama.cpp and transformers serve list the one they serve)."""
        answer = self._request(self.models_url, None, deadline)
        try:
            return str(answer["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise LLMReplyError(f"{self.label} lists no model at /v1/models; name one with --llm-model") from None

    def _request(self, url: str, body: dict | None, deadline: float):
        """GET (``body`` None) or POST ``url``; the parsed JSON, read within ``deadline``."""
        import urllib.error
        import urllib.request

        headers = {"Accept": "application/json", "User-Agent": "gouache"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        key = next((os.environ[k] for k in ENV_KEYS if os.environ.get(k)), None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=self._left(deadline)) as response:
                raw = _read(response, deadline, self._timed_out)
        except urllib.error.HTTPError as err:
            detail = _error_text(err)
            raise LLMUnavailable(f"{self.label} answered HTTP {err.code} {err.reason}"
                                 f"{': ' + detail if detail else ''}") from None
        except urllib.error.URLError as err:
            raise self._unreachable(err.reason) from None
        except (TimeoutError, OSError) as err:  # socket.timeout is TimeoutError; a reset connection an OSError
            raise self._unreachable(err) from None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise LLMReplyError(f"{self.label} did not answer with JSON: {_shown(raw)}") from None

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out()
        return left

    def _timed_out(self) -> LLMUnavailable:
        return LLMUnavailable(f"{self.label} did not answer within {self.timeout:g} s "
                              "(--llm-timeout; a bigger model or a longer reply needs more)")

    def _unreachable(self, reason) -> LLMUnavailable:
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return self._timed_out()
        if isinstance(reason, ConnectionRefusedError):
            return LLMUnavailable(f"cannot reach {self.label}: connection refused (is its server running, "
                                  "on that port?)")
        why = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return LLMUnavailable(f"cannot reach {self.label}: {why}")


def _read(response, deadline: float, timed_out) -> bytes:
    """The body, at most :data:`MAX_REPLY_BYTES`, read by the deadline (a socket timeout alone
    bounds each read, not a server that trickles)."""
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise timed_out()
        chunk = response.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise LLMReplyError(f"the LLM's answer is over {MAX_REPLY_BYTES // 2**20} MB; is the URL a chat endpoint?")
        chunks.append(chunk)


def _error_text(err) -> str:
    """OpenAI's ``{"error": {"message": …}}`` (or FastAPI's ``detail``) of an HTTP error, else its text."""
    try:
        raw = err.read(65536)
    except OSError:
        return ""
    try:
        answer = json.loads(raw)
        message = answer.get("error", answer.get("detail", answer)) if isinstance(answer, dict) else answer
        message = message.get("message", message) if isinstance(message, dict) else message
        return _shown(message if isinstance(message, str) else json.dumps(message))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return _shown(raw)


def _shown(text) -> str:
    """``text`` on one line, cut to :data:`SHOWN` characters, for a message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    one_line = " ".join(text[: 4 * SHOWN].split())
    return repr(one_line[:SHOWN] + ("…" if len(one_line) > SHOWN else ""))


# -- a local transformers folder -------------------------------------------------------------------


class LocalLM:
    """A causal LM folder, loaded offline; :meth:`chat` decodes greedily (the same messages give the
    same reply) with the tokenizer's chat template when it has one. Leaving a ``with`` block releases it."""

    def __init__(self, folder: str | os.PathLike, device: str = "cpu", timeout: float = 60.0, max_tokens: int = 300,
                 label: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        self.label = label or f"the LLM {self.folder.name}"
        check_causal_lm(self.folder)
        self.timeout, self.max_tokens = timeout, max_tokens
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(self.folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"{self.folder}: cannot load the language model: {_shown(str(err))}") from None
        self.model = model.to(device).eval()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        import gc

        self.model = self.tokenizer = None
        gc.collect()

    def chat(self, messages: list[dict]) -> str:
        import torch
        from transformers import GenerationConfig

        inputs = self._encode(messages)
        ids = inputs["input_ids"].to(self.model.device)
        mask = inputs.get("attention_mask")
        own = self.model.generation_config
        eos = own.eos_token_id if own.eos_token_id is not None else self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        # a config of our own: greedy and bounded whatever sampling defaults the folder ships
        config = GenerationConfig(max_new_tokens=self.max_tokens, do_sample=False, max_time=self.timeout,
                                  eos_token_id=eos, pad_token_id=pad)
        started = time.monotonic()
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=None if mask is None else mask.to(ids.device),
                                      generation_config=config)
        new = out[0, ids.shape[1]:]
        stops = set(eos if isinstance(eos, (list, tuple)) else [eos])
        if time.monotonic() - started >= self.timeout and not stops & set(new.tolist()):
            raise LLMUnavailable(f"{self.label} did not finish within {self.timeout:g} s "
                                 "(--llm-timeout; a bigger model or a longer reply needs more)")
        return self.tokenizer.decode(new, skip_special_tokens=True)

    def _encode(self, messages: list[dict]) -> dict:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True)
        text = "\n\n".join(m["content"] for m in messages)  # a base model: the text as it is
        return self.tokenizer(text, return_tensors="pt")
