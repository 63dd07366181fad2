"""Finding a model by the name a user gives it: one rule for checkpoints, ControlNets and LoRA.

A name is looked up among *listed* entries (what a folder scan and the built-ins offer) and never
opened as a path, which is the rule for names that come from prompts and HTTP requests; commands
that also take paths check for an existing path first (:meth:`Names.resolve`). The rule:

1. AUTOMATIC1111's title ``name [hash]`` (infotexts and ``/sd-models`` write it) counts as ``name``.
2. Entries come in groups, searched in order: the built-in model before the checkpoints folder,
   the user's LoRA folder before the shipped examples.
3. Within a group each entry answers to tiers of names, surest first: its listed name, then its
   file name, then its stem (each kind says which). The first tier some entry answers to decides;
   two entries that answer to it are ambiguous, and the error lists them.
4. An unknown name is one :class:`~gouache.errors.UnknownName` naming the closest names ("did you
   mean") and every listed one.

>>> names = Names("LoRA", [["pixel-art", "ink"]], lambda e: [[e]], str)
>>> names.lookup("pixel-art [0123456789]")
'pixel-art'
>>> names.lookup("pixel-arts")
Traceback (most recent call last):
gouache.errors.UnknownName: unknown LoRA 'pixel-arts' (did you mean 'pixel-art'?); available: pixel-art, ink
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from gouache.errors import InvalidArgument, ModelLoadError, UnknownName

E = TypeVar("E")
A1111_TITLE = re.compile(r"^(.*?)\s*\[[0-9a-fA-F]{8,10}\]$")
SHOWN_CHARS = 100  # of a name echoed back in a message: enough to recognise it, not a request body


def without_title(text: str) -> str:
    """``name`` of AUTOMATIC1111's ``name [hash]``; anything else unchanged (stripped)."""
    text = text.strip()
    title = A1111_TITLE.match(text)
    return title.group(1) if title else text


@dataclass(frozen=True)
class Names(Generic[E]):
    """The entries of one kind that a name can pick (see the module docstring for the rule)."""

    what: str  # how messages call an entry: "model", "ControlNet", "LoRA"
    groups: Sequence[Sequence[E]]  # earlier groups shadow later ones
    tiers: Callable[[E], Sequence[Sequence[str]]]  # an entry's names, surest tier first
    label: Callable[[E], str]  # how messages list an entry

    def find(self, name: str) -> E | None:
        """The entry ``name`` means, or None; two in the deciding tier raise :class:`InvalidArgument`."""
        text = without_title(name)
        for group in self.groups:
            table = [(e, self.tiers(e)) for e in group]
            for tier in range(max((len(tiers) for _, tiers in table), default=0)):
                hits = [e for e, tiers in table if tier < len(tiers) and text in tiers[tier]]
                if len(hits) > 1:
                    raise InvalidArgument(f"{self.what} name {text[:SHOWN_CHARS]!r} is ambiguous; say which: "
                                          f"{', '.join(self.label(e) for e in hits)}")
                if hits:
                    return hits[0]
        return None

    def unknown(self, name: str, hint: str = "") -> UnknownName:
        """The error for a name no entry answers to: the closest names, every listed one, then ``hint``."""
        text = without_title(name)
        entries = [e for group in self.groups for e in group]
        labels = {n: self.label(e) for e in reversed(entries) for tier in self.tiers(e) for n in tier}
        close = dict.fromkeys(labels[n] for n in difflib.get_close_matches(text, list(labels), n=3, cutoff=0.75))
        guess = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        listed = ", ".join(self.label(e) for e in entries) or "none installed"
        return UnknownName(f"unknown {self.what} {text[:SHOWN_CHARS]!r}{guess}; available: {listed}{hint}")

    def lookup(self, name: str, hint: str = "") -> E:
        """The entry ``name`` means; an unknown name raises :meth:`unknown`."""
        found = self.find(name)
        if found is None:
            raise self.unknown(name, hint)
        return found

    def resolve(self, text: str, from_path: Callable[[Path], E], suffixes: Sequence[str], hint: str = "") -> E:
        """An existing path (made an entry by ``from_path``), else a listed name. A name that looks
        like a path (a separator, or one of ``suffixes``) and is neither is a :class:`ModelLoadError`."""
        path = Path(text).expanduser()
        if path.exists():
            return from_path(path)
        found = self.find(text)
        if found is not None:
            return found
        if os.sep in text or (os.altsep and os.altsep in text) or path.suffix.lower() in suffixes:
            raise ModelLoadError(f"{path}: no such {self.what} file or folder")
        raise self.unknown(text, hint)
