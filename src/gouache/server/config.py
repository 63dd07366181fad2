"""What ``gouache serve`` is started with: one dataclass, from which the command's flags are derived."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gouache.errors import InvalidArgument


@dataclass
class ServerConfig:
    """Settings of one server. Limits answer 413 (body, init image) or 422 (asked-for size, batch).

    >>> ServerConfig(model="gouache-tiny", queue_size=4).validate()
    """

    host: str = "127.0.0.1"  # loopback only; ``--listen`` opens it to the network
    port: int = 7860  # AUTOMATIC1111's
    model: str | None = None  # checkpoint loaded at start; None: gouache-tiny
    out: str = "outputs"  # images a request asks to save (``save_images``) go under here, nowhere else
    api_auth: str | None = None  # "user:pass[,user2:pass2]": HTTP basic auth on every route
    queue_size: int = 16  # jobs waiting behind the running one; one more answers 503
    max_pixels: int = 2048 * 2048  # width × height of an image asked for or sent
    max_batch: int = 16  # batch_size × n_iter
    max_body_mb: float = 64.0  # request body; more answers 413
    preview_every: int = 5  # steps between the live previews /progress shows
    device: str = "cpu"
    ui: bool = True  # the web UI at /; False serves the API alone (A1111's --nowebui)

    def validate(self) -> None:
        for name in ("port", "queue_size", "max_pixels", "max_batch", "preview_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"`{name}` must be a positive whole number, got {value!r}")
        if not 0 < self.port < 65536:
            raise InvalidArgument(f"`port` must be between 1 and 65535, got {self.port}")
        if not isinstance(self.max_body_mb, (int, float)) or not self.max_body_mb > 0:
            raise InvalidArgument(f"`max_body_mb` must be a positive number, got {self.max_body_mb!r}")
        if self.api_auth is not None:
            parse_credentials(self.api_auth)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def out_dir(self) -> Path:
        return Path(self.out).resolve()


def parse_credentials(text: str) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` → ``{user: pass}`` (A1111's ``--api-auth``)."""
    pairs = {}
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise InvalidArgument(f"`--api-auth` must be user:password[,user2:password2], got {item.strip()!r}")
        pairs[user] = password
    return pairs
