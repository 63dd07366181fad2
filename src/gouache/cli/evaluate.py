"""``gouache evaluate``: score a model with gouache-tiny's judge (seen and held-out colour–shape pairs)."""

from __future__ import annotations

from gouache.tiny.evaluate import EvalConfig

FLAGS = {"model": "--model", "n": "--n", "steps": "--steps", "sampler": "--sampler", "cfg_scale": "--cfg", "seed": "--seed"}
HELP = {"n": "images per set", "seed": "seed of the first image of each set", "model": "the model to judge",
        "cfg_scale": "classifier-free guidance scale", "steps": "denoising steps", "sampler": "sampler name"}


def register(sub) -> None:
    from gouache.cli.common import add_dataclass_options

    p = sub.add_parser("evaluate", help="judge a model on the shapes task (seen and held-out pairs)")
    add_dataclass_options(p, EvalConfig, FLAGS, HELP, {"cfg_scale": "7; 5 for gouache-tiny"})
    p.add_argument("--save", help="also write every judged image to this folder (txt2img task)")
    p.add_argument("--task", choices=("txt2img", "img2img", "inpaint", "style", "prompt"), default="txt2img",
                   help="txt2img: seen and held-out pairs; img2img: strength 0.3 keeps a drawn image "
                        "(own caption, then another prompt), strength 1 follows another prompt; inpaint: "
                        "repaint a box around the shape with another colour and shape; style: seen pairs with "
                        "--suffix appended, counting outlines; prompt: --prompt N times, judged against --expect "
                        "(default: txt2img)")
    p.add_argument("--suffix", default="", help="style task: text appended to every prompt, e.g. "
                                                "\", outline style <lora:gouache-outline:1>\"")
    p.add_argument("--prompt", help="prompt task: the prompt, e.g. \"a <sks> on a blue background\"")
    p.add_argument("--expect", help="prompt task: the caption the images should show, e.g. "
                                    "\"a yellow circle on a blue background\"")
    p.add_argument("--clip-score", dest="clip_score", action="store_true",
                   help="also print the mean CLIP score of the images against their prompts (100 x max(cosine, 0), "
                        "torchmetrics' convention)")
    p.add_argument("--clip", metavar="NAME|PATH", default=None,
                   help="the CLIP model of --clip-score (implies it): a name in $GOUACHE_HOME/clip or a folder "
                        "(default: the built-in gouache-tiny-clip)")
    g = p.add_argument_group("speed")
    g.add_argument("--dtype", default=None, help="auto, fp32, bf16 or fp16 (default: auto, the default path's)")
    g.add_argument("--tome", dest="tome_ratio", type=float, default=None, help="token merging ratio, e.g. 0.5")
    g.add_argument("--deepcache", dest="deepcache_interval", type=int, default=None, help="DeepCache interval, e.g. 3")
    g.add_argument("--cfg-truncation", dest="cfg_truncation", type=float, default=None,
                   help="skip the unconditional pass after this fraction of the steps, e.g. 0.5")
    p.set_defaults(handler=run)


def _speed(args) -> dict:
    """EvalConfig fields from the speed group: the dtype and the approximations (validated here)."""
    from gouache.pipelines.request import GenerationRequest
    from gouache.speed.hardware import resolve_dtype

    request = {k: getattr(args, k) for k in ("tome_ratio", "deepcache_interval", "cfg_truncation")
               if getattr(args, k, None) is not None}
    GenerationRequest("check", **request).validate()
    if args.dtype is not None:
        resolve_dtype(args.dtype)
    return {"request": request, "dtype": args.dtype}


def _clip(args) -> dict:
    """EvalConfig's CLIP-score fields; the CLIP model is found before any image is made."""
    if not (args.clip_score or args.clip):
        return {}
    from gouache.vision.clip import find_clip

    find_clip(args.clip)
    return {"clip_score": True, "clip": args.clip}


def run(args) -> int:
    import dataclasses

    from gouache.cli.common import progress_bar
    from gouache.tiny.evaluate import evaluate

    from gouache.tiny.evaluate import evaluate_img2img, evaluate_inpaint, evaluate_prompt, evaluate_style

    given = {**{k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}, **_speed(args), **_clip(args)}
    if args.task == "style":
        cfg = dataclasses.replace(EvalConfig(save=args.save), **given)
        print(f"seen pairs + {args.suffix!r}: {evaluate_style(cfg, args.suffix, progress_bar('evaluate')).summary()}")
    elif args.task == "prompt":
        from gouache.errors import InvalidArgument
        from gouache.tiny.judge import parse_prompt

        if not args.prompt or not args.expect:
            raise InvalidArgument("--task prompt needs --prompt and --expect")
        try:
            parse_prompt(args.expect)
        except ValueError as e:
            raise InvalidArgument(f"--expect: {e}") from None
        cfg = dataclasses.replace(EvalConfig(save=args.save), **given)
        print(f"{args.prompt!r} as {args.expect!r}: {evaluate_prompt(cfg, args.prompt, args.expect, progress_bar('evaluate')).summary()}")
    elif args.task == "txt2img":
        cfg = dataclasses.replace(EvalConfig(save=args.save), **given)
        for name, s in evaluate(cfg, progress_bar("evaluate")).items():
            print(f"{name:>8}: {s.summary()}")
    elif args.task == "img2img":
        cfg = dataclasses.replace(EvalConfig(n=32), **given)
        print(f"strength 0.3, own caption, kept:      {evaluate_img2img(cfg, 0.3, False).summary()}")
        print(f"strength 0.3, another prompt, kept:   {evaluate_img2img(cfg, 0.3, True).summary()}")
        print(f"strength 1.0, another prompt, follows: {evaluate_img2img(cfg, 1.0, True).summary()}")
    else:
        cfg = dataclasses.replace(EvalConfig(n=32), **given)
        s, leaks = evaluate_inpaint(cfg)
        print(f"new colour and shape: {s.summary()}; images with a changed pixel outside the mask: {leaks}")
    return 0
