"""The ``gouache`` command: one thin module per command group, one place that turns errors into messages.

Each module in this package defines ``register(subparsers)``; its handler takes the parsed
arguments and returns an exit code. :func:`main` is the only place that catches
:class:`~gouache.errors.GouacheError`: one line on stderr and exit code 1, never a traceback
(2 for :class:`~gouache.cli.common.UsageError`, a malformed command line, as argparse does).
A command that sets ``field_flags`` (request field -> flag) gets messages in its own words: the
library's `` `denoising_strength` must be ...`` reads ``--strength must be ...`` on the command line.
"""

from __future__ import annotations

import argparse
import re
import sys

from gouache.cli.common import UsageError
from gouache.errors import GouacheError

COMMANDS = ("generate", "xyz", "img2img", "depth2img", "inpaint", "outpaint", "upscale", "info", "models", "train", "evaluate",
            "interrogate", "mask", "edit", "dataset", "caption", "serve", "bench", "prompt", "batch", "video")
# commands that load diffusers / transformers models
HEAVY = ("generate", "img2img", "depth2img", "inpaint", "outpaint", "upscale", "evaluate", "train", "serve", "bench",
         "interrogate", "mask", "remove-background", "edit", "xyz", "prompt-matrix", "batch", "video")


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
    except UsageError as e:
        prog = f"gouache {args.command}"
        print(f"{prog}: error: {in_flags(str(e), args)} (see `{prog} --help`)", file=sys.stderr)
        return 2
    except GouacheError as e:
        print(f"gouache: error: {in_flags(str(e), args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gouache: interrupted", file=sys.stderr)
        return 130


def in_flags(message: str, args: argparse.Namespace) -> str:
    """``message`` in the words of the command that ran: each backticked request field it names
    (`` `denoising_strength` ``) as that command's flag (``--strength``), and each ``field=VALUE``
    example (outpaint's ``right=64``) as ``--right 64``. Other text, and fields the command has no
    flag for, stay as they are; Python callers and the API keep the field names."""
    flags = getattr(args, "field_flags", None)
    if not flags:
        return message
    names = "|".join(re.escape(name) for name in sorted(flags, key=len, reverse=True))
    message = re.sub(rf"`({names})`", lambda m: flags[m[1]], message)
    return re.sub(rf"(?<![\w`-])({names})=(?=[^\s=])", lambda m: flags[m[1]] + " ", message)


if __name__ == "__main__":
    sys.exit(main())
