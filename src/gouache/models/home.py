"""Where gouache keeps models: ``$GOUACHE_HOME`` (default ``~/.gouache``).

::

    $GOUACHE_HOME/
      checkpoints/   diffusers folders and single-file .safetensors / .ckpt checkpoints
      lora/          LoRA files
      embeddings/    textual-inversion embeddings
      controlnet/    ControlNet models
      ip-adapter/    IP-Adapter weights and their image encoders
      llm/           causal language models that write prompts (gouache prompt expand)
      motion/        AnimateDiff motion adapters (diffusers MotionAdapter folders, mm_*.ckpt/.safetensors) and motion LoRAs
      builtin/       the built-in gouache-tiny, materialised on first use
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("checkpoints", "lora", "embeddings", "controlnet", "ip-adapter", "clip", "captioners", "segmenters", "llm", "motion")


def gouache_home() -> Path:
    """The models directory; read from the environment on every call, never cached at import."""
    return Path(os.environ.get("GOUACHE_HOME") or Path.home() / ".gouache").expanduser()


def models_dir(kind: str) -> Path:
    if kind not in KINDS + ("builtin",):
        raise ValueError(f"unknown models folder {kind!r}; choose one of {', '.join(KINDS)}")
    return gouache_home() / kind
