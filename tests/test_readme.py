"""The README, walked as a newcomer walks it: every fenced command that runs on the built-in model
is run as written, in order, in one fresh folder, and must exit 0; every image it makes whose
prompt names a shape is judged (``gouache.tiny.judge``).

What is not run, and why, comes from the README itself:

* a command whose comment says ``real checkpoint`` needs weights gouache cannot ship (SD 1.5,
  SDXL, a model of your own); a Python block whose first line says so is skipped whole;
* a command whose comment starts ``long:`` runs for half an hour (it says how long);
* ``make demo`` / ``make test`` are the set-up (CI runs them), and ``gouache serve`` runs until
  stopped (``tests/server`` starts it on a free port).

Trainers and benchmarks run with a few steps (``QUICK``, as the README says above its commands), the
upscaler at 2× instead of 8×, and a command that leaves the seed random gets ``--seed 1``. The files a user brings (``init.png``, ``mask.png``, ``shape.png``,
``in.png``, ``photos/``, ``prompts.txt``) are drawn by :mod:`gouache.tiny.shapes` with known contents; the wildcard
file and the ``styles.csv`` row the prompt-tools commands name are written into $GOUACHE_HOME.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

# the commands run in README order (a line uses what the lines before it made): `make test` runs
# pytest-xdist with --dist loadscope, which keeps a module's tests in one worker, in order

README = Path(__file__).resolve().parents[1] / "README.md"
REAL = "real checkpoint"
LONG = "long:"

# options appended (argparse keeps the last) so the command finishes in seconds
QUICK = {
    ("train", "base"): ["--vae-steps", "2", "--diffusion-steps", "2", "--vae-batch-size", "4", "--batch-size", "4",
                        "--text-parts-steps", "2"],
    ("train", "lora"): ["--steps", "2"],
    ("train", "embedding"): ["--steps", "2"],
    ("train", "clip"): ["--steps", "2"],
    ("train", "captioner"): ["--steps", "2"],
    ("train", "clipseg"): ["--steps", "2"],
    ("upscale",): ["--scale", "2"],
    ("evaluate",): ["--n", "8"],
    ("bench",): ["--sides", "stock,gouache", "--steps", "2"],
}

# prompts the judge cannot parse as written, and what a right image shows
EXPECT = {
    "a <sks> on a blue background": ("yellow", "circle", "blue"),  # the shipped embedding: yellow circles
    "a (red:1.4) circle on a white background": ("red", "circle", "white"),
    "a red [circle:square:0.3] on a yellow background": ("red", "square", "yellow"),  # the shape switches early
    "on a blue background": ("white", "circle", "blue"),  # with shape.png (a white circle) as the image prompt
}
PRODUCES = {"generate", "img2img", "inpaint", "outpaint", "upscale", "edit"}


def _split_comment(line: str) -> tuple[str, str]:
    """``(command, comment)``: the comment starts at the first ``#`` outside quotes after a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def readme_blocks() -> list[tuple[str, int, list[str]]]:
    """``(language, line number, lines)`` of every fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip() or "text", n + 1, []
            else:
                blocks.append((lang, start, body))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def readme_commands() -> list[tuple[int, str, str]]:
    """``(line number, command, comment)`` of every shell command, continuation lines joined."""
    out = []
    for lang, start, body in readme_blocks():
        if lang != "sh":
            continue
        pending, first = "", 0
        for n, line in enumerate(body, start):
            if not pending:
                first = n
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command, comment = _split_comment(pending + line)
            pending = ""
            if command.strip():
                out.append((first, command.strip(), comment))
    return out


def _skip_reason(command: str, comment: str) -> str | None:
    words = command.split()
    if REAL in comment:
        return "needs a real checkpoint (the README says so)"
    if comment.startswith(LONG):
        return f"a long run: {comment}"
    if words[0] == "make":
        return "the set-up; CI runs it"
    if words[:2] == ["gouache", "serve"]:
        return "runs until stopped; tests/server starts the server"
    return None


COMMANDS = readme_commands()


def test_the_readme_has_commands_and_marks():
    assert len(COMMANDS) > 40
    run = [c for c in COMMANDS if _skip_reason(c[1], c[2]) is None]
    assert len(run) >= 30, "most of the README's commands run on the built-in model"
    for n, command, comment in COMMANDS:
        assert "[--" not in command, f"README line {n}: an optional flag in brackets cannot be run as written"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh folder with the files the README's commands take from the user."""
    from gouache.tiny.shapes import ShapeSpec, draw

    root = tmp_path_factory.mktemp("readme")
    circle = ShapeSpec("blue", "circle", "white", 32, 32, 30)
    draw(circle).save(root / "init.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).ellipse((12, 12, 52, 52), fill=255)
    mask.save(root / "mask.png")
    draw(ShapeSpec("white", "circle", "black", 30, 34, 34)).save(root / "shape.png")
    draw(ShapeSpec("red", "circle", "blue", 32, 32, 34)).save(root / "in.png")
    (root / "photos").mkdir()
    for i, colour in enumerate(("red", "green", "orange")):
        draw(ShapeSpec(colour, "square", "white", 256, 256, 240), resolution=512).save(root / "photos" / f"photo-{i}.png")
    (root / "prompts.txt").write_text("a red circle on a blue background\na yellow square on a green background\n")
    home = Path(os.environ["GOUACHE_HOME"])  # the session's throw-away home: what the user keeps there
    made = [home / "wildcards" / "colour.txt", home / "styles.csv"]
    assert not any(p.exists() for p in made)
    made[0].parent.mkdir(parents=True, exist_ok=True)
    made[0].write_text("red\nyellow\nblue\n")
    made[1].write_text('name,prompt,negative_prompt\nfilled,{prompt},outline style\n')
    yield root
    for p in made:
        p.unlink()


def _prompt(args: list[str]) -> str | None:
    positional = [a for a in args[1:] if not a.startswith("-")]
    texts = [a for a in positional if " " in a]
    return texts[0] if texts else None


def _expected(prompt: str) -> tuple[str, str, str] | None:
    from gouache.tiny.judge import parse_prompt

    if prompt in EXPECT:
        return EXPECT[prompt]
    text = re.sub(r"<lora:[^>]*>", "", prompt).replace(", outline style", "").strip()
    try:
        return parse_prompt(text)
    except ValueError:
        return None


@pytest.mark.parametrize("line, command, comment", COMMANDS, ids=[f"line {c[0]}" for c in COMMANDS])
def test_readme_command(line, command, comment, workspace, monkeypatch, capsys):
    from gouache.cli import main
    from gouache.tiny.judge import read_image

    reason = _skip_reason(command, comment)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(workspace)
    args = shlex.split(command)[1:]
    for prefix, extra in QUICK.items():
        if tuple(args[: len(prefix)]) == prefix:
            args += extra
    if args[0] in PRODUCES and "--seed" not in args and "--from" not in args:
        args += ["--seed", "1"]  # judged images must not depend on a random seed
    before = set(workspace.rglob("*.png"))
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, f"README line {line}: `{command}` exited {code}: {err.strip()[-500:]}"
    assert "Traceback" not in err
    if args[0] not in PRODUCES:
        return
    made = sorted(p for p in set(workspace.rglob("*.png")) - before if not p.name.startswith("grid-"))
    assert made, f"README line {line}: no image written"
    wanted = _expected(_prompt(args) or "")
    if wanted is None:
        return
    for path in made:
        reading = read_image(Image.open(path))
        assert reading.as_tuple() == wanted, f"README line {line}: {path.name} reads as {reading.as_tuple()}, not {wanted}"
        if "outline style" in command:
            assert reading.style == "outline", f"README line {line}: {path.name} is not drawn as an outline"


def test_readme_python(workspace, monkeypatch):
    """Each ```python block runs as written (a block whose first line says it needs a real checkpoint is skipped)."""
    from gouache.tiny.judge import read_image

    monkeypatch.chdir(workspace)
    ran = 0
    for _, start, body in (b for b in readme_blocks() if b[0] == "python"):
        if body and REAL in body[0]:
            continue
        scope: dict = {}
        exec(compile("\n".join(body), f"README.md:{start}", "exec"), scope)  # noqa: S102 - the README's own code
        ran += 1
        for value in scope.values():
            if isinstance(value, list) and value and hasattr(value[0], "infotext"):
                for g in value:
                    prompt = g.infotext.splitlines()[0]
                    wanted = _expected(prompt)
                    if wanted is not None:
                        assert read_image(g.image).as_tuple() == wanted, f"README.md:{start}: {prompt!r}"
    assert ran >= 1
