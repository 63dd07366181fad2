"""The LLM options (``--llm``, ``--llm-model``, ``--llm-timeout``, ``--template``), shared by
``gouache prompt expand`` and the generation commands' ``--expand``, and what ``--expand`` does."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gouache.prompts.llm import ENV_LLM, ENV_MODEL, LLMSettings

LLM_FLAGS = ("llm", "llm_model", "llm_timeout", "template")
# the library's field names as these options, for messages (gouache.cli.in_flags)
FIELD_FLAGS = {"llm": "--llm", "llm_model": "--llm-model", "llm_timeout": "--llm-timeout", "max_tokens": "--max-tokens"}


def add_llm_options(parser, expand: bool = False) -> None:
    """The options that pick the LLM; ``expand`` adds ``--expand``, which turns it on."""
    group = parser.add_argument_group("prompt from an idea (LLM)")
    if expand:
        group.add_argument("--expand", action="store_true", default=None,
                           help="take PROMPT as an idea and let the LLM write the prompt (and the negative prompt, "
                                "unless --negative is given); the infotext keeps the idea as `Prompt idea`")
    group.add_argument("--llm", metavar="URL|PATH|NAME", default=None,
                       help=f"an OpenAI-compatible server (http://127.0.0.1:8080: llama.cpp, Ollama, vLLM, ...), a "
                            f"transformers causal-LM folder, or a name in $GOUACHE_HOME/llm (default: ${ENV_LLM})")
    group.add_argument("--llm-model", metavar="NAME", default=None,
                       help=f"the server's model name (default: ${ENV_MODEL}, else the first it lists)")
    group.add_argument("--llm-timeout", metavar="SECONDS", type=float, default=None,
                       help=f"longest wait for the LLM's answer (default: {LLMSettings.timeout:g})")
    group.add_argument("--template", metavar="FILE", default=None,
                       help="your own instructions to the LLM: a text file with {idea} where the idea goes")


def llm_settings(args: argparse.Namespace, max_tokens: int | None = None) -> LLMSettings:
    """The LLM the options name, checked, with the messages in the options' words."""
    from gouache.cli import in_flags
    from gouache.errors import InvalidArgument

    settings = LLMSettings(args.llm, args.llm_model)
    if args.llm_timeout is not None:
        settings.timeout = args.llm_timeout
    if max_tokens is not None:
        settings.max_tokens = max_tokens
    try:
        settings.validate()
    except InvalidArgument as err:
        raise InvalidArgument(in_flags(str(err), argparse.Namespace(field_flags=FIELD_FLAGS))) from None
    return settings


def template_of(args: argparse.Namespace) -> str | None:
    from gouache.prompts.expand import read_template

    return None if args.template is None else read_template(args.template)


def with_expanded_prompt(request, args: argparse.Namespace):
    """``--expand``: the request's prompt is an idea; the LLM's prompt replaces it (its negative
    prompt too, unless the request has one) and the idea is recorded. Without it, the LLM options
    are a mistake; and a ``--from`` image given a new prompt no longer has its recorded idea."""
    from gouache.cli.common import UsageError
    from gouache.errors import InvalidArgument
    from gouache.prompts.expand import check_idea, expand_prompt

    from_image, prompt = getattr(args, "from_image", None), getattr(args, "prompt", None)
    if not getattr(args, "expand", None):
        given = [f"--{name.replace('_', '-')}" for name in LLM_FLAGS if getattr(args, name, None) is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise UsageError(f"{', '.join(given)} {verb} --expand, e.g. --expand --llm http://127.0.0.1:8080")
        if from_image and prompt is not None and request.prompt_idea:
            return dataclasses.replace(request, prompt_idea="")  # a new prompt, not the recorded idea's
        return request
    if from_image and prompt is None:
        raise UsageError("--expand with --from needs a new idea, e.g. --from IMAGE --expand \"a castle\"; without "
                         "--expand, --from makes the image again from its recorded prompt (no LLM)")
    try:
        check_idea(request.prompt)
    except InvalidArgument as err:  # the idea is the command's PROMPT
        raise InvalidArgument(str(err).replace("`idea`", "PROMPT (the idea, with --expand)")) from None
    settings = llm_settings(args)
    print("gouache: asking the LLM for a prompt…", file=sys.stderr)
    expanded = expand_prompt(request.prompt, settings.llm, model=settings.model, template=template_of(args),
                             timeout=settings.timeout, max_tokens=settings.max_tokens)
    print(f"gouache: prompt: {expanded.prompt}", file=sys.stderr)
    negative = request.negative_prompt or expanded.negative_prompt
    return dataclasses.replace(request, prompt=expanded.prompt, negative_prompt=negative, prompt_idea=expanded.idea)
