"""What the API's routes and the web UI share: one :class:`Server` per app (``app.state.gouache``).

It sits apart from both so that :mod:`gouache.server.app` mounts the UI and the UI never imports
the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gouache.server.config import ServerConfig
from gouache.server.expand import PromptExpander
from gouache.server.generator import Generator
from gouache.server.jobs import JobQueue
from gouache.server.training import TrainingRunner


@dataclass
class Server:
    """The settings, the job queue, the generator, the LoRA trainer and the LLM of one running server."""

    config: ServerConfig
    queue: JobQueue
    generator: Generator
    training: TrainingRunner = field(default_factory=TrainingRunner)
    expander: PromptExpander | None = None  # made from config and queue when left out

    def __post_init__(self) -> None:
        if self.expander is None:
            self.expander = PromptExpander(self.config, self.queue)
