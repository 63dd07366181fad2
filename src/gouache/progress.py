"""Progress bars: a ``progress(i, n)`` callable that draws a tqdm bar on stderr.

Every long-running function takes ``progress(i, n)`` ("i of n done"); the command line passes a
bar that shows only on a terminal, and Python callers opt in with ``progress=True``.
"""

from __future__ import annotations

from typing import Callable

from gouache.errors import InvalidArgument

Progress = Callable[[int, int], None]


def terminal_bar(desc: str, unit: str = "step", always: bool = False) -> Progress:
    """A tqdm bar on stderr, created on the first call; hidden when stderr is not a terminal unless
    ``always``. It closes itself when ``i`` reaches ``n``."""
    from tqdm.auto import tqdm

    bar = None

    def update(i: int, n: int) -> None:
        nonlocal bar
        if bar is None or bar.total != n:
            if bar is not None:
                bar.close()
            bar = tqdm(total=n, desc=desc, unit=unit, disable=False if always else None, leave=False)
        bar.update(i - bar.n)
        if i >= n:
            bar.close()

    return update


def progress_option(progress, desc: str) -> Progress | None:
    """The Python API's ``progress=``: None or False (quiet, the default), True (a bar on stderr),
    or a callable ``progress(i, n)``."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return terminal_bar(desc, always=True)
    if callable(progress):
        return progress
    raise InvalidArgument(f"`progress` must be True (a bar on stderr), a function progress(i, n) or None, "
                          f"got {type(progress).__name__}")
