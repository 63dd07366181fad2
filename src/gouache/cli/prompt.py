"""``gouache prompt``: tools for prompts; ``gouache prompt expand IDEA`` has an LLM write one."""

from __future__ import annotations

import json

from gouache.cli.llm import add_llm_options, llm_settings, template_of


def register(sub) -> None:
    p = sub.add_parser("prompt", help="prompt tools: expand an idea into a prompt with an LLM",
                       description="Tools for prompts.")
    tools = p.add_subparsers(dest="tool", metavar="TOOL", parser_class=type(p))
    e = tools.add_parser("expand", help="an LLM writes a detailed prompt and a negative prompt from an idea",
                         description="Make an idea (\"a castle\") into a detailed prompt and a negative prompt with a "
                                     "language model: an OpenAI-compatible server or a local transformers folder.")
    e.add_argument("idea", metavar="IDEA", help="what to draw, in a few words")
    add_llm_options(e)
    e.add_argument("--max-tokens", metavar="N", type=int, default=None, help="longest reply, in tokens (default: 300)")
    e.add_argument("--device", default="cpu", help="a local model's device: cpu, cuda, mps (default: cpu)")
    e.add_argument("--json", action="store_true",
                   help='print {"prompt": ..., "negative_prompt": ..., "idea": ...} instead of two lines')
    e.set_defaults(handler=expand, field_flags={"idea": "IDEA"})
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def expand(args) -> int:
    """Print ``Prompt: …`` and ``Negative prompt: …`` (or ``--json``)."""
    import dataclasses

    from gouache.cli import quiet_libraries
    from gouache.prompts.expand import expand_prompt
    from gouache.prompts.llm import is_url

    settings = llm_settings(args, args.max_tokens)
    template = template_of(args)
    if not is_url(settings.named()):
        quiet_libraries()  # a local model: transformers' load messages stay off the terminal
    result = expand_prompt(args.idea, settings.llm, model=settings.model, template=template,
                           timeout=settings.timeout, max_tokens=settings.max_tokens, device=args.device)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), ensure_ascii=False))
    else:
        print(f"Prompt: {result.prompt}")
        print(f"Negative prompt: {result.negative_prompt}")
    return 0
