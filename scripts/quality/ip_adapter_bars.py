"""The IP-Adapter bar on gouache-tiny: an image prompt of a `{colour} {shape}`, the text `on a {background} background`.

Each case draws the colour and shape on some background (the image prompt) and asks for another
background in words; the judge (gouache.tiny.judge) reads the generated image, which is right when
its shape has the image prompt's colour and kind and its background is the text's. 64 cases of
seen colour-shape pairs and 64 of held-out ones (bar: 85 % seen, 65 % held-out), fixed seeds.

ADAPTER is an adapter's name ($GOUACHE_HOME/ip-adapter, the built-in gouache-tiny-ip-adapter), its
file (h94's layout, with its NAME.json), or a `gouache train ip-adapter` run folder, whose newest
checkpoint is measured:

    python scripts/quality/ip_adapter_bars.py gouache-tiny-ip-adapter
    python scripts/quality/ip_adapter_bars.py runs/tiny-ip-adapter [--misses 5] [--export DEST.safetensors]

``--export`` also writes what was measured in h94's layout (fp16, with its .json), as the run's end
would: a run stopped early ships its newest checkpoint this way.
"""

import argparse
import json
from pathlib import Path

import torch

from gouache.tiny.ip_eval import BARS, ip_adapter_bars


def load(model, what: Path | str):
    """``(adapter, modules or None, config or None, label)``: a name or file as is; a run folder's
    newest checkpoint as a loaded adapter."""
    path = Path(what)
    if not path.is_dir() or not (path / "checkpoints").is_dir():
        return str(what), None, None, str(what)
    from safetensors.torch import load_file

    from gouache.train.checkpoints import last_checkpoint
    from gouache.train.ip_adapter import IPAdapterObjective, IPAdapterTrainConfig, ip_modules

    ckpt = last_checkpoint(path / "checkpoints")
    if ckpt is None:
        raise SystemExit(f"{path} holds no complete checkpoint")
    saved = json.loads((path / IPAdapterObjective.config_file).read_text())
    cfg = IPAdapterTrainConfig(**{k: v for k, v in saved.items() if k in IPAdapterTrainConfig.__dataclass_fields__})
    encoder, processor = IPAdapterObjective.load_data(cfg, model)
    modules = ip_modules(cfg, model.unet, encoder, processor)  # the run's projection (plain, plus or parts)
    missing, _ = modules.load_state_dict(load_file(str(ckpt / "trainable_0.safetensors")), strict=False)
    if missing:
        raise SystemExit(f"{ckpt} lacks {missing[:3]}")
    objective = IPAdapterObjective.__new__(IPAdapterObjective)
    objective.cfg, objective.encoder, objective.processor = cfg, encoder, processor
    return objective.loaded(modules), modules, cfg, str(ckpt)


def main() -> None:
    from gouache.pipelines.model import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapter", help="a name, a weights file, or a run folder")
    ap.add_argument("--n", type=int, default=64, help="cases per set (at least 64 for the bar)")
    ap.add_argument("--steps", type=int, default=20, help="sampling steps")
    ap.add_argument("--scale", type=float, default=1.0, help="the adapter's scale")
    ap.add_argument("--misses", type=int, default=0, help="print this many misses of each set")
    ap.add_argument("--export", type=Path, help="write the measured checkpoint in h94's layout to this .safetensors")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model()
    adapter, modules, cfg, what = load(model, args.adapter)
    figures = ip_adapter_bars(model, adapter, args.n, steps=args.steps, scale=args.scale)
    print(f"ip-adapter {what} (scale {args.scale:g}, {args.steps} steps)")
    for name, score in figures.items():
        d, bar = score.as_dict(), BARS[name]
        print(f"  {name:>8}: {d['all']:.1%} of {d['n']} right (colour {d['colour']:.0%}, shape {d['shape']:.0%}, "
              f"background {d['background']:.0%}; bar {bar:.0%}: {'met' if score.rate >= bar else 'NOT met'})")
        for index, read in score.misses[: args.misses]:
            print(f"            case {index}: read {read}")
    if args.export:
        if modules is None:
            raise SystemExit("--export writes a run's checkpoint; ADAPTER is already a file")
        from dataclasses import replace

        from gouache.train.ip_adapter import save_ip_adapter

        dest = args.export.with_suffix("")
        print(save_ip_adapter(modules, replace(cfg, out_dir=dest.parent, name=dest.name), model))


if __name__ == "__main__":
    main()
