"""The video bars of issue #22 for a motion adapter on gouache-tiny, sampled with diffusers' AnimateDiffPipeline.

Until ``gouache video`` measures them on gouache's own loop, this samples 16-frame clips of
:func:`gouache.tiny.motion.evaluation_prompts` (N seen and N held-out, the four directions in turn,
clip k from seed k) with diffusers' ``AnimateDiffPipeline`` (DDIM, 20 steps, CFG 5: gouache-tiny's
default) and judges them with :func:`gouache.tiny.motion_eval.motion_bars` (frames right, clips
consistent, clips moving the named way).

ADAPTER is a ``MotionAdapter`` folder, a ``gouache train motion`` run folder (its newest checkpoint
is measured: a run can be looked at while it trains), or ``none`` (the motion modules at their start:
the image model frame by frame, the "without the adapter" row):

    python scripts/quality/motion_bars.py runs/motion/gouache-tiny-motion --n 48
    python scripts/quality/motion_bars.py runs/motion --n 16 --gif first.gif
    python scripts/quality/motion_bars.py none --n 16
    python scripts/quality/motion_bars.py gouache-tiny-motion --gouache --n 48   # through `gouache video` itself
    python scripts/quality/motion_bars.py runs/motion --gouache --n 16            # a run's newest checkpoint, too
    python scripts/quality/motion_bars.py gouache-tiny-motion --gouache --free-init 3   # with FreeInit's 3 passes

``--caption-forms`` instead asks the image model alone (gouache's txt2img, 20 steps) for one image per
evaluation prompt in each caption form of :data:`gouache.tiny.motion.CAPTION_FORMS` and judges it:
how well the frozen text encoder reads each form.

    python scripts/quality/motion_bars.py --caption-forms --n 24

``--direction-signal`` shows what the motion modules have to read the direction from (they attend
across frames, not to the text): the relative difference, at each module's input, between the
frozen UNet's features for "..., moving left" and "..., moving right", beside the difference a
background colour makes.

    python scripts/quality/motion_bars.py --direction-signal
"""

import argparse
import json
import time
from pathlib import Path

import torch


def load_adapter(what: str, unet_config):
    """``(adapter, label, caption form, words)``: a MotionAdapter from a folder, a run's newest
    checkpoint, or a fresh one (``none``), and the motion words trained with it (``--learn-words``:
    ``{word: (1, width)}``, to fold into the text encoder), or None."""
    from diffusers import MotionAdapter

    from gouache.train.motion import MOTION_WORDS, WORDS_FILE, new_adapter

    path = Path(what)
    if what == "none":
        return new_adapter(unet_config), "none", "end", None
    if not (path / "checkpoints").is_dir():
        form = "end"
        run_config = path.parent / "motion_config.json"
        if run_config.is_file():
            form = json.loads(run_config.read_text()).get("caption_form", form)
        words = None
        if (path / WORDS_FILE).is_file():
            from safetensors.torch import load_file

            words = load_file(str(path / WORDS_FILE))
        return MotionAdapter.from_pretrained(path), str(path), form, words
    from safetensors.torch import load_file

    from gouache.train.checkpoints import last_checkpoint

    cfg = json.loads((path / "motion_config.json").read_text())
    ckpt = last_checkpoint(path / "checkpoints")
    adapter = new_adapter(unet_config, cfg["motion_heads"], cfg["motion_layers"])
    state = load_file(str(ckpt / "trainable_0.safetensors"))
    words = None
    if "words.vectors" in state:  # a --learn-words run: the adapter's keys under "adapter."
        vectors = state.pop("words.vectors")
        words = {w: vectors[i : i + 1] for i, w in enumerate(MOTION_WORDS)}
        state = {k.removeprefix("adapter."): v for k, v in state.items()}
    readout = {k.removeprefix("readout."): state.pop(k) for k in [k for k in state if k.startswith("readout.")]}
    if readout:  # a --text-readout run: the adapter's keys under "adapter.", the readout's under "readout."
        from gouache.adapters.motion import motion_modules
        from gouache.adapters.motion_text import TextReadout

        state = {k.removeprefix("adapter."): v for k, v in state.items()}
        readout_module = TextReadout(readout["token.0.weight"].shape[1], [m.proj_in.in_features for m in motion_modules(adapter)])
        readout_module.load_state_dict(readout)
        readout = readout_module
    lora = {k: state.pop(k) for k in [k for k in state if k.startswith("lora.")]}
    if lora:  # a --text-lora run: the adapter's keys under "adapter.", the LoRA's under "lora." (peft's names)
        state = {k.removeprefix("adapter."): v for k, v in state.items()}
        from gouache.train.lora import kohya_state_dict

        peft = {k.removeprefix("lora.").replace(".default.", "."): v for k, v in lora.items()}
        lora = kohya_state_dict(peft, {}, cfg["text_lora"], torch.float32)
    missing, _ = adapter.load_state_dict(state, strict=False)
    assert all(k.endswith("pos_embed.pe") for k in missing), missing  # the frame positions: a buffer, not trained
    adapter.cross_attention_lora = lora or None
    object.__setattr__(adapter, "text_readout", readout or None)  # beside the adapter, not one of its submodules
    return adapter, str(ckpt), cfg["caption_form"], words


def export_run(run: Path, folder: Path) -> Path:
    """A run's newest checkpoint as a MotionAdapter folder (with its cross-attention LoRA when it trained
    one), for ``gouache video --motion FOLDER``."""
    from safetensors.torch import save_file

    from gouache.adapters.motion import CROSS_ATTENTION_LORA
    from gouache.pipelines.model import load_model

    adapter, label, _, words = load_adapter(str(run), load_model().unet.config)
    if words is not None:
        raise SystemExit("a --learn-words run: gouache video does not read its words (use the diffusers sampler)")
    adapter.save_pretrained(folder)
    if adapter.cross_attention_lora:
        save_file(adapter.cross_attention_lora, folder / CROSS_ATTENTION_LORA)
    if getattr(adapter, "text_readout", None) is not None:
        from gouache.adapters.motion import MOTION_TEXT

        (folder / MOTION_TEXT).write_bytes(adapter.text_readout.save_bytes(torch.float32))
    print(f"exported {label} to {folder}")
    return folder


def caption_forms(n: int, steps: int) -> None:
    from gouache.pipelines.model import load_model
    from gouache.pipelines.request import GenerationRequest
    from gouache.pipelines.txt2img import txt2img
    from gouache.tiny.judge import read_image
    from gouache.tiny.motion import CAPTION_FORMS, evaluation_specs

    model = load_model()
    for held_out in (False, True):
        specs = evaluation_specs(held_out, n)
        for form in CAPTION_FORMS:
            right = 0
            for k, spec in enumerate(specs):
                image = txt2img(model, GenerationRequest(spec.captioned(form), seed=k, steps=steps))[0].image
                right += read_image(image).as_tuple() == (spec.start.colour, spec.start.shape, spec.start.background)
            print(f"{'held-out' if held_out else 'seen'} pairs, form {form!r} ({CAPTION_FORMS[form]}): "
                  f"{right}/{n} images right")


def direction_signal() -> None:
    from gouache.pipelines.model import load_model
    from gouache.train.diffusion import encode_captions
    from gouache.train.motion import motion_unet, new_adapter

    pipe = load_model().pipeline
    video = motion_unet(pipe.unet, new_adapter(pipe.unet.config))
    seen: dict[str, list[torch.Tensor]] = {}
    for name, module in video.named_modules():
        if name.endswith("motion_modules.0"):
            module.register_forward_pre_hook(
                lambda mod, args, kwargs, name=name: seen.setdefault(name, []).append(
                    (args[0] if args else kwargs["hidden_states"]).clone()), with_kwargs=True)
    captions = ["a red circle on a blue background, moving left", "a red circle on a blue background, moving right",
                "a red circle on a green background, moving left"]
    text = encode_captions(pipe.tokenizer, pipe.text_encoder, captions)
    latents = torch.randn(1, 4, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    for t in (300, 800):
        seen.clear()
        with torch.no_grad():
            for i in range(3):
                video(latents, torch.tensor([t]), text[i : i + 1].repeat_interleave(16, 0))
        for name, (left, right, green) in seen.items():
            print(f"t={t} {name}: left vs right {float((left - right).norm() / left.norm()):.3f}, "
                  f"blue vs green background {float((left - green).norm() / left.norm()):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", nargs="?", default="none")
    parser.add_argument("--caption-forms", action="store_true", help="judge the image model on each caption form")
    parser.add_argument("--direction-signal", action="store_true", help="how much the direction word changes the "
                                                                        "features the motion modules see")
    parser.add_argument("--n", type=int, default=48, help="clips per set (seen, held-out)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=None, help="CFG scale (default: the model's, 5 for gouache-tiny)")
    parser.add_argument("--truncation", type=float, default=None, help="with --gouache: CFG truncation (default: the "
                        "model's, 0.5 for gouache-tiny; 1: guidance on every step)")
    parser.add_argument("--free-init", type=int, default=0, help="with --gouache: FreeInit's passes (default: off)")
    parser.add_argument("--gif", default=None, help="write the first clip here")
    parser.add_argument("--per-clip", action="store_true", help="print each clip's motion: how far along and "
                        "across the named way, the largest step back, the shape's size and where it starts")
    parser.add_argument("--gouache", action="store_true", help="sample with `gouache video` (gouache's loop, "
                        "gouache-tiny's defaults: DPM++ 2M, CFG 5, truncation 0.5) instead of diffusers' pipeline; "
                        "ADAPTER is then what --motion takes (a name such as gouache-tiny-motion, or a folder)")
    args = parser.parse_args()
    if args.caption_forms:
        return caption_forms(args.n, args.steps)
    if args.direction_signal:
        return direction_signal()

    if args.gouache:
        return gouache_loop(args)
    from diffusers import AnimateDiffPipeline, DDIMScheduler

    from gouache.pipelines.model import load_model
    from gouache.tiny.motion import evaluation_prompts

    pipe = load_model().pipeline
    adapter, label, form, words = load_adapter(args.adapter, pipe.unet.config)
    if getattr(adapter, "cross_attention_lora", None) or getattr(adapter, "text_readout", None):
        raise SystemExit("a --text-lora or --text-readout run: measure it with --gouache (gouache video applies them)")
    if words is not None:
        from gouache.train.motion import fold_words

        fold_words(pipe.text_encoder, pipe.tokenizer, words)
        label += " (with its motion words)"
    video = AnimateDiffPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                                motion_adapter=adapter, scheduler=DDIMScheduler.from_config(pipe.scheduler.config))
    video.set_progress_bar_config(disable=True)
    clips, t0, cfg = [], time.time(), 5.0 if args.cfg is None else args.cfg
    for held_out in (False, True):
        for k, prompt in enumerate(evaluation_prompts(held_out, args.n, form=form)):
            out = video(prompt, num_frames=16, height=64, width=64, num_inference_steps=args.steps,
                        guidance_scale=cfg, generator=torch.Generator().manual_seed(k), output_type="pil")
            clips.append((out.frames[0], prompt))
    report(clips, f"{label}: {args.n} clips per set, DDIM {args.steps} steps, CFG {cfg:g}, {time.time() - t0:.0f} s",
           args.gif, args.per_clip)


def gouache_loop(args) -> None:
    """The clips made by ``gouache video`` itself (gouache.pipelines.video.txt2vid) at the model's defaults."""
    from gouache.pipelines.model import load_model
    from gouache.pipelines.video import VideoRequest, load_motion_for, txt2vid
    from gouache.tiny.motion import evaluation_prompts

    from gouache.adapters.motion import parse_motion

    model = load_model()
    name, scale = parse_motion(args.adapter)  # NAME:0 is the image model frame by frame
    if (Path(name) / "checkpoints").is_dir():  # a run: its newest checkpoint
        import tempfile

        name = str(export_run(Path(name), Path(tempfile.mkdtemp()) / Path(name).name))
    first = VideoRequest("a red circle on a blue background, moving left", motion=name, frames=16)
    motion = load_motion_for(model, first)
    clips, t0 = [], time.time()
    for held_out in (False, True):
        for k, prompt in enumerate(evaluation_prompts(held_out, args.n)):
            request = VideoRequest(prompt, motion=motion.name, motion_scale=scale, frames=16, steps=args.steps, seed=k,
                                   cfg_scale=args.cfg, cfg_truncation=args.truncation, free_init=args.free_init)
            video = txt2vid(model, request, motion=motion)[0]
            clips.append((video.frames, prompt))
    report(clips, f"gouache video --motion {args.adapter}: {args.n} clips per set, {args.steps} steps, CFG {'default' if args.cfg is None else args.cfg}, "
                  f"truncation {'default' if args.truncation is None else args.truncation}"
                  f"{f', FreeInit {args.free_init} passes' if args.free_init > 1 else ''}, {time.time() - t0:.0f} s", args.gif, args.per_clip)


def report(clips, title: str, gif: str | None, per_clip: bool = False) -> None:
    from gouache.tiny.motion_eval import motion_bars, passes

    scores = motion_bars(clips)
    print(title)
    for name, score in scores.items():
        print(f"  {name}: {score.summary()}")
        for prompt, why in score.misses[:3]:
            print(f"    miss: {prompt}: {why}")
    print("  bars:", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in passes(scores).items()))
    from gouache.tiny.motion_eval import judge_clip

    moves = [m for m in (judge_clip(frames, prompt).motion for frames, prompt in clips) if m is not None]
    if moves:  # does anything move, and which way: the named one (travel > 0) or not
        print(f"  first to last frame: along the named way {sum(m.travel for m in moves) / len(moves):+.1f} px on "
              f"average ({sum(m.travel > 0 for m in moves)}/{len(moves)} clips forward), across it "
              f"{sum(m.drift for m in moves) / len(moves):.1f} px")
    if per_clip:
        import numpy as np

        from gouache.tiny.judge import shape_mask
        from gouache.tiny.motion_eval import centre

        for frames, prompt in clips:
            j = judge_clip(frames, prompt)
            size = float(np.sqrt(shape_mask(frames[0]).sum()))
            where = centre(frames[0])
            m = j.motion
            moved = f"along {m.travel:+5.1f} across {m.drift:4.1f} back {m.back:3.1f}" if m else "a frame without a shape"
            start = f"({where[0]:4.1f}, {where[1]:4.1f})" if where else "-"
            print(f"    {'yes' if j.moving else 'no '} {prompt.rsplit(' ', 1)[-1]:>5} {moved}, size {size:4.1f} px, "
                  f"starts at {start}, frames right {j.frames_right}/{j.frames}")
    if gif:
        frames, prompt = clips[0]
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=125, loop=0)
        print(f"  {gif}: {prompt}")


if __name__ == "__main__":
    main()
