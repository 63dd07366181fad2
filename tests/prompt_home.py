"""A $GOUACHE_HOME with wildcards and styles, for the tests of styles and dynamic prompts: the
session's home (its gouache-tiny) with a wildcards folder and a styles.csv of its own."""

from __future__ import annotations

import os
from pathlib import Path

WILDCARDS = {
    "colour": "red\nblue\n# a comment line\n\ngreen\n",
    "shape": "circle\nsquare\n",
    "colours/warm": "red\n__colours/deep__\n",
    "colours/deep": "dark red\n",
    "background": "{yellow|blue} background\n",
    "loop/a": "x __loop/b__\n",
    "loop/b": "y __loop/a__\n",
}
STYLES = ("name,prompt,negative_prompt\n"
          "outline,\"{prompt}, outline style\",\n"
          "Muted,\"muted colours\",\"bright, saturated\"\n")


def make_home(path: Path, wildcards: dict[str, str] | None = None, styles: str | None = STYLES) -> Path:
    """``path`` as a $GOUACHE_HOME: the current home's built-in models, these wildcard files and styles."""
    current = Path(os.environ["GOUACHE_HOME"]) / "builtin"
    path.mkdir(parents=True, exist_ok=True)
    if current.exists() and not (path / "builtin").exists():
        (path / "builtin").symlink_to(current, target_is_directory=True)
    for name, text in (WILDCARDS if wildcards is None else wildcards).items():
        file = path / "wildcards" / f"{name}.txt"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    if styles is not None:
        (path / "styles.csv").write_text(styles)
    return path
