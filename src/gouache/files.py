"""Output locations, checked before any work is done (the CLI, the trainers and the benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path

from gouache.errors import OutputError


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
