"""LoRA training for the web UI: one run at a time in a background thread, watched from its run
folder (``loss.jsonl``, ``loss.png``, ``validation/step-*.png``), as A1111's Train tab runs one
textual-inversion job at a time.

>>> runner = TrainingRunner()                  # finished LoRAs go to $GOUACHE_HOME/lora  # doctest: +SKIP
>>> runner.start(LoraTrainConfig(dataset="data/outline", out_dir=..., name="outline"))  # doctest: +SKIP
>>> runner.status().step                                                    # doctest: +SKIP
120

A finished LoRA is copied into the models folder atomically (a temporary file, fsynced, then linked
into place) and never over a file there: a LoRA of the same name that appeared while the run
trained is kept, and the message says where the run's own file is.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gouache.errors import GouacheError, InvalidArgument, OutputError


class TrainingBusy(GouacheError):
    """A training run is going; the UI starts one at a time."""


class Stopped(Exception):
    """Raised from the run's log callback after :meth:`TrainingRunner.stop`; not an error."""


@dataclass
class TrainingStatus:
    """What the UI shows of the current (or last) run."""

    running: bool = False
    name: str = ""
    step: int = 0
    steps: int = 0
    losses: list[dict] = field(default_factory=list)  # loss.jsonl's rows: {"step", "loss", "lr"}
    loss_plot: Path | None = None
    validation: Path | None = None  # the latest validation grid
    result: Path | None = None  # the LoRA file, once done
    message: str = ""
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.name:
            return "No training run yet."
        loss = f", loss {self.losses[-1]['loss']:.4f}" if self.losses else ""
        state = "training" if self.running else "finished"
        return f"{self.name}: {state}, step {self.step}/{self.steps}{loss}. {self.message}".strip()


class TrainingRunner:
    """Runs :func:`gouache.train.lora.train_lora` in a thread; ``lora_dir`` is where a finished
    LoRA is copied so the prompt pickers list it (``$GOUACHE_HOME/lora`` by default)."""

    def __init__(self, lora_dir: Path | None = None,
                 train: Callable | None = None):
        self.lora_dir = lora_dir
        self._train = train
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cfg = None
        self._log: deque[str] = deque(maxlen=200)
        self._stop = threading.Event()
        self._result: Path | None = None
        self._message = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, cfg) -> None:
        """Start training ``cfg`` (a :class:`~gouache.train.lora.LoraTrainConfig`); a second start
        while one runs raises :class:`TrainingBusy`."""
        cfg.validate()
        if not Path(cfg.dataset).is_dir():
            raise InvalidArgument(f"`dataset` {str(cfg.dataset)!r} is not a folder; give the path of a prepared "
                                  "dataset (gouache prepare) on the server")
        target = self._lora_dir() / f"{cfg.name}.safetensors"
        if target.exists():  # even with `overwrite`, which is about the run folder: the UI never replaces a LoRA
            raise InvalidArgument(f"a LoRA named {cfg.name!r} exists ({target}); choose another name")
        with self._lock:
            if self.running:
                raise TrainingBusy(f"a training run ({self._cfg.name}) is going; wait for it to finish or stop it")
            self._cfg, self._result, self._message = cfg, None, ""
            self._log.clear()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, args=(cfg,), name="gouache-train", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the run to stop at its next log line (its checkpoints stay, so it can be resumed)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> TrainingStatus:
        cfg = self._cfg
        if cfg is None:
            return TrainingStatus()
        folder = Path(cfg.out_dir)
        losses = _read_losses(folder / "loss.jsonl")
        grids = sorted((folder / "validation").glob("step-*.png"))
        plot = folder / "loss.png"
        return TrainingStatus(
            running=self.running, name=cfg.name, step=losses[-1]["step"] if losses else 0, steps=cfg.steps,
            losses=losses, loss_plot=plot if plot.is_file() else None, validation=grids[-1] if grids else None,
            result=self._result, message=self._message, log=list(self._log))

    def _lora_dir(self) -> Path:
        if self.lora_dir is not None:
            return Path(self.lora_dir)
        from gouache.models.home import models_dir

        return models_dir("lora")

    def _run(self, cfg) -> None:
        def log(line: str) -> None:
            self._log.append(str(line))
            if self._stop.is_set():
                raise Stopped

        train = self._train
        if train is None:
            from gouache.train.lora import train_lora as train
        try:
            path = Path(train(cfg, log))
        except Stopped:
            self._message = "Stopped; start it again with the same name and folder to resume."
            return
        except Exception as err:  # noqa: BLE001 - the run's failure is shown in the UI, not lost in a thread
            self._message = f"Failed: {err}"
            return
        self._result, self._message = self._install(path, cfg.name)

    def _install(self, path: Path, name: str) -> tuple[Path, str]:
        """Copy the run's LoRA into the models folder; never over a file there. Returns the file the
        user should use and the message for the UI."""
        from gouache.metadata.png import atomic_copy_file

        target = self._lora_dir() / path.name
        try:
            atomic_copy_file(path, target)
        except OutputError as err:
            if target.exists():  # appeared while the run trained (or while it was copied)
                return path, (f"Trained, but a LoRA named {name!r} appeared in {target.parent} meanwhile and was left "
                              f"as it is; this run's LoRA is {path}: copy it there under another name to use it.")
            return path, f"Trained, but it could not be copied to the LoRA folder ({err}); this run's LoRA is {path}."
        return target, f"Saved {target}; use it with <lora:{name}:1>."


def _read_losses(path: Path) -> list[dict]:
    """loss.jsonl read as the trainer reads it (a resumed run's redone steps count once)."""
    from gouache.train.loop import read_losses

    return read_losses(path)
