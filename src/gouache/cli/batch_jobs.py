"""The jobs file of ``gouache batch``: each line as a job (:class:`gouache.batch.tasks.Job`).

A ``.txt`` file holds one prompt a line. A ``.jsonl`` file holds one JSON object a line whose keys
are the command line's options without their dashes, as ``gouache generate``, ``img2img`` and
``inpaint`` spell them (the field table :data:`gouache.pipelines.fields.FIELDS`), plus ``prompt``,
``init`` and ``mask``::

    {"prompt": "a red circle on a blue background", "seed": 7, "steps": 20, "lora": "gouache-outline:0.8"}
    {"prompt": "a green square", "init": "shapes/one.png", "strength": 0.6}
    {"prompt": "a blue triangle", "init": "shapes/two.png", "mask": "shapes/two-mask.png"}

A line with ``init`` is image-to-image, with ``mask`` (or ``mask-prompt``) too, inpainting; true
turns a switch on; a list repeats an option. Relative paths are read from the jobs file's folder.
The options given on the command line apply to every line; a line's own win (lists add up).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from gouache.batch.tasks import Job, derived_seed, spec_hash
from gouache.errors import GouacheError, InvalidArgument

SUFFIXES = (".jsonl", ".txt")
MAX_BYTES = 64 << 20
MODE_WORDS = {"txt2img": "text-to-image", "img2img": "image-to-image", "inpaint": "inpainting"}
# keys whose value is a file (or, for control, PREPROCESSOR:FILE...): read from the jobs file's folder
PATH_KEYS = ("init", "mask", "ip-image", "from")
_RE_KEY = re.compile(r"[a-z][a-z0-9_-]{0,40}")
_RE_WEIGHTS = re.compile(r"(?::[-+.0-9eE]+)*\Z")


class LineParser(argparse.ArgumentParser):
    """argparse that raises :class:`InvalidArgument` instead of exiting."""

    def error(self, message: str):
        raise InvalidArgument(message)


def add_shared_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``gouache generate`` (bar its PROMPT and ``--from``): shared by every job."""
    from gouache.cli.common import add_field_options, add_hires_options, add_request_options

    add_request_options(parser)
    add_hires_options(parser)
    add_field_options(parser, "refiner")
    add_field_options(parser, "guidance")


_PARSERS: dict[str, LineParser] = {}


def mode_parser(mode: str) -> LineParser:
    """The options a line of ``mode`` may have: the matching command's, with PROMPT etc. as options."""
    if mode in _PARSERS:
        return _PARSERS[mode]
    from gouache.cli.common import add_img2img_options, add_mask_options, add_request_options

    p = LineParser(prog="gouache batch", add_help=False, allow_abbrev=False)
    p.add_argument("--prompt", default=None)
    if mode == "txt2img":
        add_shared_options(p)
        p.add_argument("--from", dest="from_image", default=None)
    else:
        p.add_argument("--init", default=None)
        add_img2img_options(p)
        if mode == "inpaint":
            p.add_argument("--mask", default=None)
            add_mask_options(p)
        add_request_options(p, size="INIT's size")
    _PARSERS[mode] = p
    return p


def option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> option name without dashes, for the parser's ``--long`` options."""
    out = {}
    for action in parser._actions:  # argparse's list of options; no public accessor
        for name in action.option_strings:
            if name.startswith("--"):
                out.setdefault(action.dest, name[2:])
    return out


def read_lines(path: str) -> list[tuple[int, dict | str]]:
    """``(line number, options)`` for each job of the file (blank lines, and ``#`` lines of a .txt,
    skipped); a line that is no JSON object gives its message instead of options."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise InvalidArgument(f"JOBS {path} must be a .jsonl file of requests or a .txt file of prompts")
    if not p.is_file():
        raise InvalidArgument(f"JOBS {path} is not a file")
    if p.stat().st_size > MAX_BYTES:
        raise InvalidArgument(f"JOBS {path} is over {MAX_BYTES >> 20} MB; split it into several batches")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"JOBS {path} is not UTF-8 text (byte {e.start})") from None
    out = []
    for n, text in enumerate(lines, 1):
        if not text.strip() or (p.suffix.lower() == ".txt" and text.lstrip().startswith("#")):
            continue
        if p.suffix.lower() == ".txt":
            out.append((n, {"prompt": text.strip()}))
            continue
        try:
            item = json.loads(text)
        except ValueError as e:
            out.append((n, f"not JSON ({e.msg} at column {e.colno})"))
            continue
        out.append((n, item if isinstance(item, dict) else
                    f"a JSON object is a request, e.g. {{\"prompt\": \"a red circle\"}}; got {type(item).__name__}"))
    return out


def mode_of(options: dict) -> str:
    if options.get("mask") is not None or options.get("mask-prompt", options.get("mask_prompt")) is not None:
        return "inpaint"
    return "img2img" if options.get("init") is not None else "txt2img"


def line_tokens(options: dict, folder: Path, known: dict[str, str]) -> list[str]:
    """The command-line tokens a line's options stand for (``--steps=20``), paths from ``folder``."""
    names = set(known.values())
    tokens = []
    for key, value in options.items():
        name = key.replace("_", "-") if isinstance(key, str) and _RE_KEY.fullmatch(key) else None
        if name not in names:
            raise InvalidArgument(f"`{str(key)[:40]}` is not an option of a {MODE_WORDS[mode_of(options)]} job "
                                  "(the keys are gouache generate/img2img/inpaint's options without --, and "
                                  "prompt, init, mask)")
        for v in value if isinstance(value, list) else [value]:
            if v is True:
                tokens.append(f"--{name}")
            elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
                tokens.append(f"--{name}={_from_folder(name, str(v), folder)}")
            elif v is not None and v is not False:
                raise InvalidArgument(f"`{key}` must be text, a number, true or a list of them, got {type(v).__name__}")
    return tokens


def _from_folder(name: str, value: str, folder: Path) -> str:
    """A relative path in ``value`` as seen from the jobs file's folder: the value of an image key,
    the file of ``control`` (PREPROCESSOR:FILE[:numbers]), and a ``lora`` or ``model`` file that is there."""
    if name in PATH_KEYS:
        return value if Path(value).expanduser().is_absolute() else str(folder / value)
    if name == "control" and ":" in value:
        pre, rest = value.split(":", 1)
        file = rest[: _RE_WEIGHTS.search(rest).start()]
        if file and not Path(file).is_absolute() and (folder / file).is_file():
            return f"{pre}:{folder / rest}"
    if name in ("lora", "model"):
        file = value[: _RE_WEIGHTS.search(value).start()] if name == "lora" else value
        if file and not Path(file).expanduser().is_absolute() and (folder / file).exists():
            return str(folder / value)
    return value


def merged(shared: argparse.Namespace, line: argparse.Namespace, mode: str, flags: dict[str, str]) -> argparse.Namespace:
    """The line's options over the command line's (``shared``): the line's win, lists add up; a
    command-line option the line's mode does not take is an error naming both."""
    out = vars(line).copy()
    for key, value in vars(shared).items():
        if value is None or key not in flags:
            continue
        if key not in out:
            raise InvalidArgument(f"--{flags[key]} (on the command line) is for text-to-image jobs, "
                                  f"and this is an {MODE_WORDS[mode]} job")
        if out[key] is None:
            out[key] = value
        elif isinstance(value, list) and isinstance(out[key], list):
            out[key] = value + out[key]
    return argparse.Namespace(**out)


def build_job(line: int, options: dict, folder: Path, shared: argparse.Namespace, flags: dict[str, str]) -> Job:
    """One line as a job: its request built and checked as its command builds it, seeds fixed."""
    mode = mode_of(options)
    parser = mode_parser(mode)
    known = option_names(parser)
    tokens = line_tokens(options, folder, known)
    args = merged(shared, parser.parse_args(tokens), mode, flags)
    spec = spec_hash(json.dumps(sorted((k, repr(v)) for k, v in vars(args).items() if v is not None)))
    try:
        return _job(line, mode, args, spec)
    except GouacheError as e:
        from gouache.cli import in_flags

        named = argparse.Namespace(field_flags={dest: f"`{name}`" for dest, name in known.items()})
        raise type(e)(in_flags(str(e), named)) from None


def _job(line: int, mode: str, args: argparse.Namespace, spec: str) -> Job:
    import dataclasses

    from gouache.cli.common import prepared_request

    if getattr(args, "expand", None):
        raise InvalidArgument("`expand` is not for batches: write the prompts first with `gouache prompt expand` "
                              "and put them in the jobs file")
    if args.prompt is None and getattr(args, "from_image", None) is None:
        raise InvalidArgument("the line has no `prompt`, e.g. {\"prompt\": \"a red circle on a blue background\"}")
    if mode == "txt2img":
        from gouache.cli.generate import build_request
    elif mode == "img2img":
        from gouache.cli.img2img import build_request
    else:
        from gouache.cli.inpaint import build_request
    request = prepared_request(build_request(args), args)
    seed = request.seed if request.seed != -1 else derived_seed(line, spec)
    subseed = request.subseed if request.subseed != -1 else derived_seed(line, spec, "subseed")
    loras = tuple((str(o.path.resolve()), o.name) for o in args.lora or [] if o.path is not None)
    return Job(line, spec, mode, dataclasses.replace(request, seed=seed, subseed=subseed), loras,
               batch_speed(args))


def batch_speed(args: argparse.Namespace):
    """The options' speed settings, with dtype auto made $GOUACHE_DTYPE when that is set here, so
    that workers elsewhere use this machine's choice."""
    import dataclasses
    import os

    from gouache.cli.common import model_device, speed_settings
    from gouache.errors import InvalidArgument

    speed = speed_settings(args)
    if model_device(args, speed) != "cpu":
        raise InvalidArgument("`gouache batch` runs its workers on CPU; --device is for generate, img2img, inpaint, ...")
    chosen = os.environ.get("GOUACHE_DTYPE", "").strip()
    return dataclasses.replace(speed, dtype=chosen) if speed.dtype == "auto" and chosen else speed


def read_jobs(path: str, shared: argparse.Namespace, flags: dict[str, str]) -> list[Job]:
    """Every job of the file at ``path``; a line that is not a request is a job with its ``error``."""
    folder = Path(path).resolve().parent
    jobs = []
    for line, options in read_lines(path):
        if isinstance(options, str):
            jobs.append(Job(line, spec_hash(options), error=options))
            continue
        try:
            jobs.append(build_job(line, options, folder, shared, flags))
        except GouacheError as e:
            jobs.append(Job(line, spec_hash(json.dumps(options, sort_keys=True, default=str)), error=str(e)))
    return jobs
