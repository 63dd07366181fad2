"""AUTOMATIC1111's "Interrogate CLIP": a caption, then the CLIP-ranked best matches from flavour lists.

The lists are text files, one entry a line: gouache's own in ``gouache/vision/interrogate/``
(``mediums``, ``movements``, ``artists``, ``flavours``) and any ``.txt`` in
``$GOUACHE_HOME/interrogate/``; the file name is the category, and ``NAME.topN.txt`` keeps the N best
(A1111's ``flavors.top3.txt``), else the single best. A user's file with a shipped category's name
replaces it. The prompt is the caption, then each category's matches that score above
``min_score``, joined with ", ":

>>> with load_clip() as clip:                                     # doctest: +SKIP
...     interrogate(image, clip).prompt
'a flat colour illustration, minimalism, by Josef Albers, flat colour, geometric, red'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gouache.errors import InvalidArgument
from gouache.models.home import gouache_home

MAX_ENTRIES = 5000  # lines of one list: each is a text embedding per interrogation
MAX_LISTS = 32  # lists in all
MAX_LINE = 200  # characters of one entry
TOP = re.compile(r"^(?P<name>.+?)(?:\.top(?P<top>\d+))?$")


@dataclass(frozen=True)
class FlavourList:
    """One category: its entries and how many of the best the prompt keeps."""

    name: str
    entries: tuple[str, ...]
    top: int = 1
    source: Path | None = None


@dataclass
class Interrogation:
    """What :func:`interrogate` found: the caption, each category's ranked matches, the prompt."""

    caption: str
    matches: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # category -> [(entry, cosine)]
    prompt: str = ""


def shipped_lists_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("gouache.vision") / "interrogate"))


def user_lists_dir() -> Path:
    """Where a user's own lists go: ``$GOUACHE_HOME/interrogate/`` (file name = category)."""
    return gouache_home() / "interrogate"


def read_list(path: Path) -> FlavourList:
    """A list file: its non-empty lines (stripped, duplicates dropped), capped in count and length."""
    match = TOP.match(path.name[:-len(".txt")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"{path}: cannot read this interrogation list ({err})") from None
    entries = tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if len(entries) > MAX_ENTRIES:
        raise InvalidArgument(f"{path}: {len(entries)} entries; an interrogation list holds at most "
                              f"{MAX_ENTRIES} (split it into several files)")
    long = next((e for e in entries if len(e) > MAX_LINE), None)
    if long is not None:
        raise InvalidArgument(f"{path}: an entry is over {MAX_LINE} characters ({long[:40]!r}...); shorten it")
    top = int(match["top"]) if match["top"] else 1
    if top < 1:
        raise InvalidArgument(f"{path}: .top{top} must keep at least one entry (e.g. {match['name']}.top3.txt)")
    return FlavourList(match["name"], entries, top, path)


def flavour_lists() -> list[FlavourList]:
    """The shipped lists, then the user's: a user's file replaces the shipped one of its category."""
    found: dict[str, FlavourList] = {}
    order = ("mediums", "movements", "artists", "flavours")
    shipped = sorted(shipped_lists_dir().glob("*.txt"), key=lambda p: (_rank(order, p), p.name))
    user = sorted(user_lists_dir().glob("*.txt")) if user_lists_dir().is_dir() else []
    if len(user) > MAX_LISTS:
        raise InvalidArgument(f"{user_lists_dir()}: {len(user)} lists; at most {MAX_LISTS} are read "
                              "(merge or remove some)")
    for path in [*shipped, *user]:
        flavours = read_list(path)
        found[flavours.name] = flavours
    return [f for f in found.values() if f.entries]


def _rank(order: tuple[str, ...], path: Path) -> int:
    name = TOP.match(path.name[:-len(".txt")])["name"]
    return order.index(name) if name in order else len(order)


def open_captioner(name: str | None, device: str = "cpu") -> tuple[object | None, str]:
    """The captioner a user names, and why there is none: ``"none"`` asks for none; a left-out name
    means the built-in ``gouache-tiny-captioner`` when it is installed, else none (the reason says
    why). A named captioner that cannot load raises."""
    from gouache.errors import GouacheError, ModelLoadError

    if name is not None and name.strip().lower() == "none":
        return None, "no captioner asked for"
    try:
        from gouache.vision.captioners import load_captioner
    except ImportError:
        if name is not None:
            raise ModelLoadError("captioners are not available in this gouache; pass --captioner none") from None
        return None, "captioners are not available in this gouache"
    try:
        return load_captioner(name, device=device), ""
    except GouacheError as err:
        if name is not None:
            raise
        return None, str(err)


def reranks(captioner: str | None, clip: str | None) -> bool:
    """Whether interrogation lets its CLIP pick the caption from the captioner's beam candidates: for
    the built-in captioner with the built-in CLIP (they read the same world), as ``gouache caption``
    does by default (:func:`~gouache.vision.captioners.rerank_clip`); any other pair captions greedily,
    as A1111 does."""
    return captioner is None and clip is None


def interrogate(image, clip, captioner=None, lists: list[FlavourList] | None = None,
                min_score: float = 0.0, rerank: bool = False) -> Interrogation:
    """A1111's Interrogate CLIP for one PIL image: ``captioner.caption([image])[0]`` (None: no caption;
    ``rerank``: ``clip`` picks it from the captioner's beam candidates, see :func:`reranks`), then from
    each list its ``top`` best entries by cosine with the image, kept when above ``min_score``."""
    from gouache.images import flatten

    image = flatten(image)  # transparency onto white, as A1111 does
    caption = ""
    if captioner is not None:
        caption = (captioner.caption([image], rerank=clip) if rerank else captioner.caption([image]))[0].strip()
    lists = flavour_lists() if lists is None else lists
    image_embed = clip.image_embeds([image])
    result = Interrogation(caption)
    for flavours in lists:
        if not flavours.entries:
            continue
        scores = (image_embed @ clip.text_embeds(flavours.entries, cache=True).T)[0].tolist()
        ranked = sorted(zip(flavours.entries, scores), key=lambda pair: -pair[1])
        result.matches[flavours.name] = ranked[:flavours.top]
        result.prompt += "".join(f", {text}" for text, score in ranked[:flavours.top] if score > min_score)
    result.prompt = (caption + result.prompt) if caption else result.prompt.removeprefix(", ")
    return result
