"""The ``gouache`` command: one thin module per command group, one place that turns errors into messages.

Each module in this package defines ``register(subparsers)``; its handler takes the parsed
arguments and returns an exit code. :func:`main` is the only place that catches
:class:`~gouache.errors.GouacheError`: one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from gouache.errors import GouacheError

COMMANDS = ("generate", "img2img", "depth2img", "inpaint", "outpaint", "upscale", "info", "models", "train", "evaluate",
            "dataset", "serve", "bench")
# commands that load diffusers / transformers models
HEAVY = ("generate", "img2img", "depth2img", "inpaint", "outpaint", "upscale", "evaluate", "train", "serve", "bench")


def quiet_libraries() -> None:
    """The terminal shows gouache's own progress bar and messages, not the libraries' load logs."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    for lib in (dlog, tlog):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (and exits 2, as argparse does)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from gouache import __version__

    parser = _Parser(prog="gouache", description="Generate, edit and customise images with Stable Diffusion.")
    parser.add_argument("--version", action="version", version=f"gouache {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"gouache.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        if args.command in HEAVY:
            quiet_libraries()
        return int(args.handler(args) or 0)
    except GouacheError as e:
        print(f"gouache: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gouache: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
