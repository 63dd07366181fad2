"""The ✨ button beside each tab's prompt: the server's LLM makes the idea in the prompt box into a
detailed prompt and a negative prompt, which replace both boxes (:mod:`gouache.server.expand`). It
is there only when the server has an LLM (``gouache serve --llm``)."""

from __future__ import annotations

import gradio as gr

from gouache.errors import GouacheError


def button(server, tab: str) -> gr.Button | None:
    """The ✨ (id ``<tab>-expand``), or None when ``server`` has no LLM."""
    if server is None or not server.expander.configured:
        return None
    return gr.Button("✨", elem_classes="gouache-tool-button", elem_id=f"{tab}-expand", scale=0, min_width=40)


def wire(server, sparkle: gr.Button | None, prompt: gr.Textbox, negative: gr.Textbox) -> None:
    """Clicking ✨ replaces the prompt with the LLM's and fills the negative prompt."""
    if sparkle is None:
        return

    def expand(idea: str):
        if not (idea or "").strip():
            raise gr.Error("Write an idea in the prompt box first, e.g. \"a castle\".")
        try:
            result = server.expander.expand(idea)
        except GouacheError as err:
            raise gr.Error(str(err)) from None
        return result.prompt, result.negative_prompt

    sparkle.click(expand, prompt, [prompt, negative], concurrency_limit=None)

