"""Helpers shared by the command modules: dataclass-derived options, progress bars, output folders."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from gouache.errors import OutputError


def add_dataclass_options(parser: argparse.ArgumentParser, cls, flags: dict[str, str], help: dict[str, str]) -> None:
    """Add ``--flag`` options for the fields of dataclass ``cls`` named in ``flags``.

    Types come from the fields' defaults; every default is ``None`` on the command line so that a
    handler can tell "given" from "not given" (``--from IMAGE`` keeps what the image says unless a
    flag overrides it).
    """
    for f in dataclasses.fields(cls):
        if f.name not in flags:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            parser.add_argument(flags[f.name], dest=f.name, action="store_const", const=True, default=None,
                                help=help.get(f.name, ""))
            continue
        kind = type(default) if default is not None else (int if f.name in ("width", "height") else str)
        shown = "the model's size" if default is None else default
        parser.add_argument(flags[f.name], dest=f.name, type=kind, default=None,
                            help=f"{help.get(f.name, '')} (default: {shown})")


def progress_bar(desc: str):
    """A tqdm bar on stderr (hidden when stderr is not a terminal) as a ``progress(i, n)`` callable."""
    from tqdm.auto import tqdm

    bar = None

    def update(i: int, n: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=n, desc=desc, unit="step", disable=None, leave=False)
        bar.update(i - bar.n)
        if i >= n:
            bar.close()

    return update


def writable_folder(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it can be written, before any work is done."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {folder}: {e.strerror}") from None
    if not folder.is_dir():
        raise OutputError(f"output path {folder} exists and is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")
    return folder
