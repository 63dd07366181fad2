"""What ``gouache serve`` is started with: one dataclass, from which the command's flags are derived."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gouache.errors import InvalidArgument, check_int


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
    api_auth_file: str | None = None  # a file holding that text (keeps passwords out of `ps`), one pair a line too
    queue_size: int = 16  # jobs waiting behind the running one; one more answers 503
    max_pixels: int = 2048 * 2048  # width × height of an image asked for or sent
    max_batch: int = 16  # batch_size × n_iter
    max_body_mb: float = 64.0  # request body; more answers 413
    max_job_pixels: int = 16 * 2048 * 2048  # pixels of every image one job makes (hires size), and its inputs
    max_steps: int = 150  # sampling steps, and hires steps (A1111's slider ends at 150)
    max_prompt_chars: int = 20_000  # prompt and negative prompt, each; longer answers 413
    max_and_parts: int = 16  # `AND` parts of a prompt: each is one more UNet pass per step
    max_controlnets: int = 8  # ControlNet units of one request (sd-webui-controlnet allows up to 10)
    max_uploads: int = 256  # files the web UI keeps uploaded at once (an inpaint edit uploads 3+); older go first
    datasets: str | None = None  # folder of prepared datasets the Train tab lists; None: $GOUACHE_HOME/datasets
    cors_allow_origins: str | None = None  # "https://a.example,https://b.example": sites whose pages may call the API
    preview_every: int = 5  # steps between the live previews /progress shows
    device: str = "cpu"
    # torch.compile of the UNet: compiled once per model and shape, then reused by every request (docs/gpu.md)
    compile: bool = False
    compile_mode: str = "default"
    clip: str | None = None  # the CLIP model of /interrogate: a name in $GOUACHE_HOME/clip or a path; None: built-in
    captioner: str | None = None  # its captioner: a name or path; None: the built-in if installed; "none": none
    ui: bool = True  # the web UI at /; False serves the API alone (A1111's --nowebui)
    # the LLM of /gouache/v1/prompt/expand and the UI's ✨ (gouache.prompts.llm): a URL, a folder or a name; None: none
    llm: str | None = None
    llm_model: str | None = None  # the endpoint's model name; None: the first it lists
    llm_timeout: float = 60.0  # seconds one prompt may take
    llm_max_tokens: int = 300  # tokens of one reply

    def validate(self) -> None:
        for name in ("port", "queue_size", "max_pixels", "max_batch", "preview_every", "max_job_pixels", "max_steps",
                     "max_prompt_chars", "max_and_parts", "max_controlnets", "max_uploads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"`{name}` must be a positive whole number, got {value!r}")
        check_int("port", self.port, 1, 65535)
        if not isinstance(self.max_body_mb, (int, float)) or not self.max_body_mb > 0:
            raise InvalidArgument(f"`max_body_mb` must be a positive number, got {self.max_body_mb!r}")
        if self.api_auth is not None or self.api_auth_file is not None:
            self.credentials()
        self.speed()  # a bad compile mode, or CUDA graphs on a machine without CUDA: one line at start
        if self.llm:
            from gouache.prompts.llm import LLMSettings, find_llm

            LLMSettings(self.llm, self.llm_model, self.llm_timeout, self.llm_max_tokens).validate()
            find_llm(self.llm)  # a bad URL, an unknown name, a folder that is no causal LM: one line at start

    def speed(self):
        """The :class:`gouache.speed.SpeedSettings` the server loads its models with."""
        from gouache.speed import SpeedSettings
        from gouache.speed.cuda import check_cuda_options, check_device

        settings = SpeedSettings(compile=self.compile, compile_mode=self.compile_mode)
        settings.validate()
        check_cuda_options(settings, check_device(self.device))
        return settings

    def credentials(self) -> dict[str, str]:
        """``{user: password}`` from ``api_auth`` and ``api_auth_file``; empty: no auth."""
        pairs = parse_credentials(self.api_auth) if self.api_auth else {}
        if self.api_auth_file:
            path = Path(self.api_auth_file).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise InvalidArgument(f"`--api-auth-file` {str(path)!r} cannot be read: "
                                      f"{getattr(err, 'strerror', None) or err}") from None
            lines = ",".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
            if not lines:
                raise InvalidArgument(f"`--api-auth-file` {str(path)!r} holds no user:password line")
            pairs.update(parse_credentials(lines))
        return pairs

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def out_dir(self) -> Path:
        return Path(self.out).resolve()

    @property
    def datasets_dir(self) -> Path:
        """The Train tab's datasets: only folders directly under it can be picked (by name)."""
        if self.datasets:
            return Path(self.datasets).expanduser().resolve()
        from gouache.models.home import gouache_home

        return (gouache_home() / "datasets").resolve()

    @property
    def loopback(self) -> bool:
        """Bound to loopback only: then the Host header must name loopback too (DNS rebinding)."""
        return self.host in LOOPBACK_HOSTS

    def allowed_origins(self) -> list[str]:
        """Origins (``scheme://host[:port]``) other than the server's own whose pages may call it."""
        return [o.strip().rstrip("/") for o in (self.cors_allow_origins or "").split(",") if o.strip()]


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_credentials(text: str) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` → ``{user: pass}`` (A1111's ``--api-auth``)."""
    pairs = {}
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            shown = f"{user}:***" if sep else "(no colon)"  # never echo a password
            raise InvalidArgument(f"`--api-auth` must be user:password[,user2:password2], got {shown!r}")
        pairs[user] = password
    return pairs
