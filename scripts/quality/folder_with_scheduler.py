"""Copy the materialised gouache-tiny folder to OUT with another scheduler in scheduler/ and model_index.json.

The scheduler config is gouache's SCHEDULER_CONFIG (gouache.models.tiny_architecture) with `_class_name` replaced,
`skip_prk_steps` dropped and `timestep_spacing: leading` written out (PNDM's default, which
diffusers' from_config would not carry to a class whose default differs, e.g. Euler's linspace).

Run: .venv/bin/python scripts/quality/folder_with_scheduler.py DDIMScheduler /tmp/gouache-tiny-ddim
     .venv/bin/python scripts/quality/folder_with_scheduler.py PNDMScheduler /tmp/gt-pndm skip_prk_steps=true  # SD 1.5's
"""
import json
import shutil
import sys
from pathlib import Path

from gouache.models.builtin import materialize
from gouache.models.home import models_dir
from gouache.models.tiny_architecture import SCHEDULER_CONFIG

cls, out = sys.argv[1], Path(sys.argv[2])
src = materialize(models_dir("builtin"))
shutil.rmtree(out, ignore_errors=True)
shutil.copytree(src, out)
cfg = {k: v for k, v in SCHEDULER_CONFIG.items() if k != "skip_prk_steps"}


def value(text: str):
    try:
        return json.loads(text)  # true, 1, 0.5 ...
    except json.JSONDecodeError:
        return text


cfg.update({"_class_name": cls, "timestep_spacing": "leading",
            **{k: value(v) for k, v in (a.split("=", 1) for a in sys.argv[3:])}})
(out / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg, indent=2))
index = json.loads((out / "model_index.json").read_text())
index["scheduler"] = ["diffusers", cls]
(out / "model_index.json").write_text(json.dumps(index, indent=2))
print(out, cfg)
