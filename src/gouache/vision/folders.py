"""Local model folders of one kind, found by name: the built-in that ships with gouache, then the user's.

CLIP models and segmenters are transformers folders (``config.json`` and the weights, as
``save_pretrained`` writes them). A :class:`ModelFolders` names where one kind lives — the built-in
in ``gouache/models/weights/<shipped>/<builtin>/``, the user's in ``$GOUACHE_HOME/<kind>/<name>/`` —
and picks a folder by the one rule for names (:mod:`gouache.models.names`): a listed name first
(the server passes names only), then a path, else an error listing what exists.

>>> CLIPS = ModelFolders("CLIP model", "gouache-tiny-clip", "clip", "clip", "--clip", "CLIPModel folders", "CLIP")
>>> CLIPS.find(None)                                        # doctest: +SKIP
PosixPath('.../gouache/models/weights/clip/gouache-tiny-clip')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gouache.errors import ModelLoadError
from gouache.models.home import models_dir


class Released:
    """A loaded model (``model``, ``processor``) used in a ``with`` block: leaving it, or :meth:`close`,
    drops the weights (and the CUDA cache they held); the object cannot run afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        import gc

        import torch

        self.model = self.processor = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file()


@dataclass(frozen=True)
class ModelFolders:
    """One kind of model folder: how messages call it, its built-in, where it ships and where users put it."""

    what: str  # "CLIP model", "segmenter"
    builtin: str  # the shipped model's name, e.g. "gouache-tiny-clip"
    shipped: str  # its folder under gouache/models/weights/
    kind: str  # the user's folder under $GOUACHE_HOME (gouache.models.home.KINDS)
    flag: str  # the option that names one, for messages: "--clip"
    holds: str  # what users put there, for messages: "CLIPModel folders"
    label: str  # the built-in's kind, for messages: "CLIP", "CLIPSeg"

    def builtin_dir(self) -> Path:
        from importlib import resources

        return Path(str(resources.files("gouache.models") / "weights" / self.shipped / self.builtin))

    def user_dir(self) -> Path:
        return models_dir(self.kind)

    def listed(self) -> dict[str, Path]:
        """Every folder a name can pick: the built-in (when installed), then the user's, by folder name."""
        found = {self.builtin: self.builtin_dir()} if is_model_folder(self.builtin_dir()) else {}
        if self.user_dir().is_dir():
            for folder in sorted(self.user_dir().iterdir()):
                if folder.is_dir() and is_model_folder(folder) and folder.name not in found:
                    found[folder.name] = folder
        return found

    def find(self, name_or_path: str | os.PathLike | None = None, hint: str = "") -> Path:
        """The folder a name (or a path) means; None or the built-in's name: the built-in."""
        from gouache.models.names import Names

        if name_or_path is None or str(name_or_path) == self.builtin:
            if not is_model_folder(self.builtin_dir()):
                raise ModelLoadError(f"the built-in {self.label} is not installed; pass {self.flag} NAME|PATH "
                                     f"(one of the {self.holds}, or a name under {self.user_dir()})")
            return self.builtin_dir()
        listed = self.listed()
        if str(name_or_path) in listed:  # a listed name before any path of that name
            return listed[str(name_or_path)]
        names = Names(self.what, [list(listed)], lambda n: [[n]], str)
        picked = names.resolve(str(name_or_path), lambda p: p, (), hint or f" (put {self.holds} in {self.user_dir()})")
        if isinstance(picked, Path) and not is_model_folder(picked):
            raise ModelLoadError(f"{picked}: not a {self.what} folder (no config.json)")
        return picked if isinstance(picked, Path) else listed[picked]
