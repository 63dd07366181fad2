"""The training loop's checkpoints: complete or absent, checked before they are trusted.

A checkpoint is a folder ``checkpoints/step-NNNNNNN`` holding what ``accelerate`` saves (the
trainable parameters, the optimizer, the learning-rate schedule, the random states), what the
objective adds, and ``state.json``.

Writing (:func:`save_checkpoint`): everything goes into a hidden ``.step-NNNNNNN.tmp`` folder; every
file and folder in it is fsynced; ``state.json`` comes last and lists each file with its size and
the settings a resumed run must keep (a LoRA's rank, the base model); only then is the folder
renamed into place (and its parent fsynced). A write that fails, a full disk most often, removes
the temporary folder and leaves every earlier checkpoint as it was.

Reading (:func:`resume`): newest first. A checkpoint whose ``state.json`` is missing or garbled,
whose files are missing or shorter than ``state.json`` says (a truncated copy), whose
``.safetensors`` do not parse, or that ``accelerate`` cannot load is skipped with a log line that
names it and left as it is; the next older one is tried. Old checkpoints are pruned only below the
one just written, so the run keeps ``keep`` good checkpoints (at least 2) and a damaged newer one
never pushes a good one out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from gouache.errors import InvalidArgument, ModelLoadError, OutputError

CHECKPOINT_PREFIX = "step-"
STATE = "state.json"
MIN_KEEP = 2  # the newest checkpoint and one to fall back to
_TORCH_FILES = (".bin", ".pkl", ".pt", ".pth")  # what accelerate and objectives write with torch.save
_NAME = re.compile(re.escape(CHECKPOINT_PREFIX) + r"\d+")


class Unreadable(Exception):
    """A checkpoint that cannot be trusted; the message says why (a fact about the files, not a user error)."""


def checkpoints(ckpt_dir: Path) -> list[Path]:
    """The published checkpoint folders, newest first (temporary ``.tmp`` folders are not)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if _NAME.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=step_of, reverse=True)


def step_of(folder: Path) -> int:
    return int(folder.name[len(CHECKPOINT_PREFIX) :])


def last_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that passes :func:`read_state` (damaged and temporary ones are skipped)."""
    return _first_readable(checkpoints(ckpt_dir))


def _first_readable(folders: list[Path]) -> Path | None:
    for folder in folders:
        try:
            read_state(folder)
        except Unreadable:
            continue
        return folder
    return None


def read_state(folder: Path) -> dict:
    """``state.json`` of a checkpoint, once every file it lists is there at its size and every
    ``.safetensors`` parses; raises :class:`Unreadable` saying what is wrong.

    >>> read_state(Path("runs/x/checkpoints/step-0000200"))  # doctest: +SKIP
    {'step': 200, 'settings': {'--rank': '8'}, 'files': {'optimizer.bin': 1234, ...}}
    """
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Unreadable(f"it has no {STATE}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Unreadable(f"its {STATE} is garbled") from None
    except OSError as err:
        raise Unreadable(f"its {STATE} cannot be read: {err.strerror}") from None
    if not isinstance(state, dict) or state.get("step") != step_of(folder):
        raise Unreadable(f"its {STATE} does not name step {step_of(folder)}")
    files = state.get("files", {})  # checkpoints written before gouache listed their files have none
    for name, size in files.items():
        try:
            actual = (folder / name).stat().st_size
        except OSError:
            raise Unreadable(f"{name} is missing") from None
        if actual != size:
            raise Unreadable(f"{name} has {actual} bytes where {size} were written")
    check_files(folder)
    return state


def check_files(folder: Path) -> None:
    """Raise :class:`Unreadable` when a ``.safetensors`` under ``folder`` does not parse or a file
    ``torch.save`` wrote (a zip archive: ``.bin``, ``.pkl``, ``.pt``) lacks its end, as a truncated
    copy does. Cheap: it reads headers, not tensors."""
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            _check_safetensors(path, folder)
        elif path.suffix in _TORCH_FILES:
            _check_torch_file(path, folder)


def _check_safetensors(path: Path, folder: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            f.keys()
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError, or OSError
        raise Unreadable(f"{path.relative_to(folder)} is not a readable safetensors file ({err})") from None


def _check_torch_file(path: Path, folder: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:  # reads the central directory, written last
            size = path.stat().st_size
            complete = all(i.header_offset + i.compress_size <= size for i in archive.infolist())
    except (OSError, zipfile.BadZipFile):
        complete = False
    if not complete:
        raise Unreadable(f"{path.relative_to(folder)} is incomplete (not the whole archive torch.save writes)")


# --------------------------------------------------------------------------------------------
# settings a resumed run must keep


def check_settings(ckpt_dir: Path, settings: dict[str, str], run: Path) -> None:
    """Raise InvalidArgument when the run's newest readable checkpoint was written with other
    ``settings`` (``{"--rank": "8", ...}``, keyed by the flag that sets them) than this run has."""
    for folder in checkpoints(ckpt_dir):
        try:
            state = read_state(folder)
        except Unreadable:
            continue
        _compare(state.get("settings") or {}, settings, run)
        return


def _compare(saved: dict, settings: dict[str, str], run: Path) -> None:
    for key, value in settings.items():
        old = saved.get(key)
        if old is None or str(old) == str(value):
            continue
        if key.startswith("--"):
            raise InvalidArgument(f"{run} was trained with {key} {old} (this run has {value}); resume it with "
                                  f"{key} {old} or use a new --out folder")
        raise InvalidArgument(f"{run} was trained with {key} {old} (this run has {value}); resume it with the same "
                              f"{key} or use a new --out folder")


# --------------------------------------------------------------------------------------------
# writing


def save_checkpoint(accelerator, save_extra: Callable[[Path], None], ckpt_dir: Path, step: int, keep: int,
                    settings: dict[str, str] | None = None) -> Path:
    """Write the checkpoint of ``step`` (see the module doc); raises OutputError, with what to do,
    when it cannot be written. Returns the published folder."""
    final = ckpt_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = ckpt_dir / f".{final.name}.tmp"
    main = accelerator.is_main_process
    try:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))  # every process writes its random state
        accelerator.wait_for_everyone()
        if main:
            save_extra(tmp)
            files = _sync_tree(tmp)
            _check_written(tmp, final)
            write_synced(tmp / STATE, json.dumps({"step": step, "settings": settings or {}, "files": files}).encode())
            _sync_dir(tmp)
            _publish(tmp, final)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        if isinstance(err, RuntimeError) and not _writing(err):
            raise
        raise OutputError(_cannot_write(final, err)) from err
    finally:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already once published
    if main:
        _prune(ckpt_dir, step, keep)
    accelerator.wait_for_everyone()
    return final


def _check_written(tmp: Path, final: Path) -> None:
    """torch.save and safetensors' save_file have been seen to report no error writing to a full
    device; what they wrote is read back (its headers) before it is published."""
    try:
        check_files(tmp)
    except Unreadable as why:
        raise OutputError(_cannot_write(final, f"{why}; is the disk full?")) from None


def _writing(err: RuntimeError) -> bool:
    """torch's zip writer: "PytorchStreamWriter failed writing file", "unexpected pos 704 vs 598"."""
    text = str(err)
    return "inline_container" in text or "PytorchStreamWriter" in text or "write" in text.lower()


def _cannot_write(final: Path, err: BaseException | str) -> str:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
    try:
        free = f" ({shutil.disk_usage(final.parent).free / 2**20:.0f} MB free there)"
    except OSError:
        free = ""
    older = [p for p in checkpoints(final.parent) if step_of(p) < step_of(final)]
    kept = _first_readable(older)
    if kept is None:
        return (f"cannot write checkpoint {final}: {reason}{free}. The run stopped at step {step_of(final)} with no "
                f"earlier checkpoint; free some disk space and run the same command again")
    return (f"cannot write checkpoint {final}: {reason}{free}. The run stopped; its last checkpoint {kept} is kept: "
            f"free some disk space and run the same command again to resume from it")


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it, so a full disk raises OSError here and not later
    (safetensors' ``save_file`` has been seen to report no error writing to a full device)."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sync_tree(folder: Path) -> dict[str, int]:
    """fsync every file and folder under ``folder``; returns each file's size by its relative path."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            _sync_path(path)
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
        elif path.is_dir():
            _sync_dir(path)
    return files


def _sync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows' fsync needs a writable handle
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    if os.name == "nt":  # a folder cannot be opened to fsync it there; NTFS journals its renames
        return
    _sync_path(folder)


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; a checkpoint already there (a run redoing a step) is replaced only
    once the new one is in place."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _sync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prune(ckpt_dir: Path, step: int, keep: int) -> None:
    """Remove all but the ``keep - 1`` newest checkpoints older than ``step``; newer ones (damaged
    ones a resumed run skipped) are left for the user to look at until the run writes their step."""
    older = [p for p in checkpoints(ckpt_dir) if step_of(p) < step]
    for folder in older[max(keep, MIN_KEEP) - 1 :]:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# reading


def resume(accelerator, load_extra: Callable[[Path], None], ckpt_dir: Path, settings: dict[str, str],
           log: Callable[[str], None], name: str) -> int:
    """Load the newest checkpoint that can be read, skipping (and naming) damaged ones; returns its
    step, or 0 when there is none. Raises ModelLoadError when checkpoints exist but none can be read,
    InvalidArgument when the run's settings differ from the checkpoint's."""
    run = ckpt_dir.parent
    skipped = []
    for folder in checkpoints(ckpt_dir):
        try:
            state = read_state(folder)
            _compare(state.get("settings") or {}, settings, run)
            _load(accelerator, load_extra, folder)
        except Unreadable as why:
            skipped.append(f"{folder.name} ({why})")
            log(f"[{name}] skipping checkpoint {folder}: it cannot be read ({why}); it is left as it is until the run "
                "writes that step again, and the one before it is tried")
            continue
        log(f"[{name}] resumed from {folder} at step {state['step']}")
        return state["step"]
    if skipped:
        raise ModelLoadError(f"no checkpoint in {ckpt_dir} can be read: {'; '.join(skipped)}. If a setting changed "
                             f"since the run started (--rank, --base), resume with the one it started with; else "
                             f"move that folder away to train {run} again from step 0, or use a new --out folder")
    return 0


def _load(accelerator, load_extra: Callable[[Path], None], folder: Path) -> None:
    from gouache.train.processes import adopt_main_random_states

    try:
        accelerator.load_state(str(folder))
        adopt_main_random_states(accelerator, folder)  # written by 1 process or N, resumed by any number
        load_extra(folder)
    except Exception as err:  # noqa: BLE001 - pickle, zip, safetensors and shape errors all mean: not this one
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise Unreadable(f"loading it failed: {text}") from err
