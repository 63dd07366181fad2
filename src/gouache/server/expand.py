"""The server's prompt expansion: ``POST /gouache/v1/prompt/expand`` and the web UI's ✨ button.

The LLM is the one the operator started the server with (``gouache serve --llm URL|PATH``, or
``$GOUACHE_LLM``); a request sends an idea and nothing else (a body naming a URL, a path or a model
is refused), so no client can make the server open a file or call an address. The work is bounded:
the idea's length, the reply's tokens (``--llm-max-tokens``) and the time (``--llm-timeout``). A local
model runs on the job queue like the other model work (loaded for the job, released after); an
endpoint is called from the web side, at most :data:`MAX_REMOTE_CALLS` at once. What goes wrong is a
:class:`~gouache.prompts.llm.LLMError` (503) that calls the LLM "the server's LLM", not by its address.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict

from pydantic import BaseModel, ConfigDict

from gouache.errors import ModelLoadError
from gouache.prompts.expand import ExpandedPrompt, check_idea, expand_prompt
from gouache.prompts.llm import ENV_LLM, LLMSettings, LLMUnavailable, is_url
from gouache.server.jobs import Interrupted, JobQueue, Tracker

logger = logging.getLogger(__name__)

MAX_REMOTE_CALLS = 4  # endpoint calls in flight at once; one more answers 503 at once
LABEL = "the server's LLM"


class ExpandBody(BaseModel):
    """``POST /gouache/v1/prompt/expand``: the idea alone; the LLM is the server's."""

    model_config = ConfigDict(extra="forbid")  # "llm", "url", "model": never taken from a request

    idea: str = ""


class ExpandResponse(BaseModel):
    prompt: str
    negative_prompt: str
    idea: str


class PromptExpander:
    """The server's LLM, as ``gouache serve --llm``/``--llm-model``/``--llm-timeout``/``--llm-max-tokens`` set it."""

    def __init__(self, config, queue: JobQueue):
        self.config, self.queue = config, queue
        self._remote = threading.BoundedSemaphore(MAX_REMOTE_CALLS)

    @property
    def configured(self) -> bool:
        return bool(self.config.llm)

    @property
    def local(self) -> bool:
        return self.configured and not is_url(self.config.llm)

    def check(self, idea) -> str:
        """The idea, stripped, once the server is known to have an LLM (422 for the idea, 503 without one)."""
        if not self.configured:
            raise LLMUnavailable(f"this server has no LLM to write prompts; its operator starts it with "
                                 f"gouache serve --llm URL|PATH (or sets ${ENV_LLM})")
        return check_idea(idea)

    def expand(self, idea) -> ExpandedPrompt:
        """From a worker thread (the web UI): checked, then run where it belongs, waited for."""
        idea = self.check(idea)
        if self.local:
            return self.queue.submit("expand", lambda tracker: self.run_local(idea, tracker)).result()
        return self.run_remote(idea)

    def settings(self) -> LLMSettings:
        c = self.config
        return LLMSettings(c.llm, c.llm_model, c.llm_timeout, c.llm_max_tokens, c.device)

    def run_remote(self, idea: str) -> ExpandedPrompt:
        if not self._remote.acquire(blocking=False):
            raise LLMUnavailable(f"{LABEL} is busy with {MAX_REMOTE_CALLS} prompts; try again in a moment")
        try:
            return self._run(idea)
        finally:
            self._remote.release()

    def run_local(self, idea: str, tracker: Tracker) -> ExpandedPrompt:
        """The queue's job: load the model, write the prompt, release it."""
        try:
            tracker.check()
            return self._run(idea)
        except Interrupted:
            raise LLMUnavailable("the prompt was interrupted (POST /interrupt) before the LLM ran") from None
        except ModelLoadError as err:
            logger.error("gouache: the LLM cannot be loaded: %s", err)
            raise LLMUnavailable(f"{LABEL} cannot be loaded; the server's log says why") from None

    def _run(self, idea: str) -> ExpandedPrompt:
        s = self.settings()
        return expand_prompt(idea, s.llm, model=s.model, timeout=s.timeout, max_tokens=s.max_tokens, device=s.device,
                             label=LABEL)


def response(result: ExpandedPrompt) -> dict:
    return asdict(result)
