"""``manifest.jsonl``: one line per image of a batch, what makes a run resumable.

Each line is a JSON object: ``job`` (the jobs file's line), ``image`` (from 0), ``seed``, ``file``
(the PNG's name in the output folder), ``status`` ("ok" or "error"), ``error`` (the message, for a
failed image) and ``spec`` (a fingerprint of the job's options). Lines are appended as images are
made, so a crash or Ctrl-C loses none; the end of a run rewrites the file in job order, one line per
image. The PNGs are the truth: an image whose file is in the folder is done; a manifest line
without its file, or an error, is made again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gouache.batch.tasks import ImageResult, Job
from gouache.errors import OutputError

NAME = "manifest.jsonl"


def entry(job: Job, result: ImageResult | None = None) -> dict:
    """The manifest line of ``result`` (one image of ``job``), or of a job that is no request."""
    if result is None:
        return {"job": job.line, "image": None, "seed": None, "file": None, "status": "error",
                "error": job.error, "spec": job.spec}
    line = {"job": job.line, "image": result.image, "seed": result.seed, "file": result.file,
            "status": "error" if result.error else "ok", "spec": job.spec}
    if result.error:
        line["error"] = result.error
    return line


def read_manifest(folder: Path) -> dict[tuple, dict]:
    """The entries of ``folder``'s manifest by ``(job, image)``, the last one of each winning; lines
    that are not JSON objects (the last one, cut by a crash) are skipped."""
    path = folder / NAME
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for text in f:
            try:
                item = json.loads(text)
            except ValueError:
                continue
            if isinstance(item, dict) and "job" in item and "image" in item:
                out[(item["job"], item["image"])] = item
    return out


class Manifest:
    """The manifest being written: :meth:`add` appends (and syncs) a line, :meth:`close` rewrites
    the file in job order with the entries of this batch's jobs."""

    def __init__(self, folder: Path, entries: dict[tuple, dict]):
        self.path = folder / NAME
        self.entries = dict(entries)
        try:
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror}") from None

    def add(self, item: dict) -> None:
        self.entries[(item["job"], item["image"])] = item
        self.file.write(json.dumps(item) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self, keys: list[tuple]) -> None:
        """Rewrite the manifest atomically with the entries of ``keys`` (``(job, image)``, in the
        order given): the images of the jobs file as it is now; others (lines it no longer has) go."""
        from gouache.metadata.png import atomic_write_bytes

        self.file.close()
        text = "".join(json.dumps(self.entries[key]) + "\n" for key in keys if key in self.entries)
        atomic_write_bytes(self.path, text.encode("utf-8"), overwrite=True)
