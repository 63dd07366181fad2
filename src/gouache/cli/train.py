"""``gouache train``: the trainers. ``base`` trains gouache-tiny from scratch; ``lora`` and
``embedding`` customise a model on a prepared dataset (``gouache dataset prepare``); ``lcm-lora``
distils a LoRA for few-step sampling."""

from __future__ import annotations

import dataclasses

from gouache.train.base import BaseTrainConfig
from gouache.train.controlnet import ControlNetTrainConfig
from gouache.train.embedding import EmbeddingTrainConfig
from gouache.train.lcm import LOSSES, LcmLoraTrainConfig
from gouache.train.lora import FORMATS, TARGETS, LoraTrainConfig

BASE_FLAGS = {
    "dataset": "--dataset", "seed": "--seed", "vae_steps": "--vae-steps", "diffusion_steps": "--diffusion-steps",
    "vae_batch_size": "--vae-batch-size", "diffusion_batch_size": "--batch-size", "vae_lr": "--vae-lr",
    "diffusion_lr": "--lr", "mixed_precision": "--mixed-precision", "checkpoint_minutes": "--checkpoint-minutes",
    "vae_outline_fraction": "--vae-outline-fraction", "vae_styles_steps": "--vae-styles-steps", "vae_styles_lr": "--vae-styles-lr",
}


def register(sub) -> None:
    from gouache.cli.common import add_dataclass_options

    p = sub.add_parser("train", help="train models")
    kinds = p.add_subparsers(dest="trainer", metavar="TRAINER")
    base = kinds.add_parser("base", help="train gouache-tiny from scratch (resumes from the last checkpoint)")
    base.add_argument("--out", required=True, help="run folder: checkpoints, logs and the final weights")
    add_dataclass_options(base, BaseTrainConfig, BASE_FLAGS, {"dataset": "procedural dataset: shapes"})
    base.add_argument("--extend-vae", metavar="PACKED", default=None,
                      help="extend the VAE of a packed gouache-tiny .safetensors trained without outlines (stage 3 alone, "
                           "--vae-styles-steps, 1200 by default)")
    base.set_defaults(handler=run_base, field_flags=BASE_FLAGS)

    lora = kinds.add_parser("lora", help="train a LoRA on a prepared dataset (resumes from the last checkpoint)",
                            description="Train a LoRA with peft and accelerate; writes OUT/NAME.safetensors in kohya's "
                                        "layout (loads in AUTOMATIC1111, ComfyUI and diffusers). Run it again with the "
                                        "same --out to resume; `accelerate launch -m gouache train lora ...` for "
                                        "several GPUs.")
    _lora_arguments(lora, "transformer, kohya's", "")
    add_dataclass_options(lora, LoraTrainConfig, LORA_FLAGS, TRAIN_HELP, {"base": "gouache-tiny", "alpha": "the rank",
                                                                            "resolution": "the model's size",
                                                                            "text_encoder_lr": "--lr"})
    lora.set_defaults(handler=run_lora, field_flags={**LORA_FLAGS, **LOOP_FLAGS})

    lcm = kinds.add_parser("lcm-lora", help="distil an LCM-LoRA: 2-8 step sampling with the LCM sampler at CFG 1 "
                                            "(resumes from the last checkpoint)",
                           description="Latent consistency distillation into a LoRA: the model with the LoRA off is "
                                       "the teacher (guided DDIM steps over a skipped schedule), with it on the "
                                       "student. Writes OUT/NAME.safetensors in kohya's layout; sample with "
                                       "<lora:NAME:1> (or --lora NAME:1), --sampler LCM, --steps 4, --cfg 1. Run it "
                                       "again with the same --out to resume.")
    _lora_arguments(lcm, "all, as LCM-LoRA", "; default: the dataset's first 4 captions")
    lcm.add_argument("--loss", choices=LOSSES, default=None,
                     help="huber: pseudo-Huber distance; l2: mean squared error (default: huber)")
    add_dataclass_options(lcm, LcmLoraTrainConfig, LCM_FLAGS, TRAIN_HELP,
                          {"base": "gouache-tiny", "alpha": "the rank", "resolution": "the model's size"})
    lcm.set_defaults(handler=run_lcm_lora, field_flags={**LCM_FLAGS, **LOOP_FLAGS, "loss": "--loss"})

    emb = kinds.add_parser("embedding", help="train a textual-inversion embedding (resumes from the last checkpoint)",
                           description="Textual inversion: train the vectors of a new token, everything else frozen. "
                                       "Writes OUT/NAME.safetensors (diffusers) and OUT/NAME.pt (AUTOMATIC1111); the "
                                       "captions must contain the token.")
    emb.add_argument("dataset", metavar="DATASET", help="a folder made by `gouache dataset prepare`")
    emb.add_argument("--out", required=True, help="run folder: checkpoints, validation grids, loss curve, the files")
    emb.add_argument("--validation-prompt", dest="validation_prompts", action="append", default=None, metavar="PROMPT",
                     help="a prompt for the validation grid, with the token in it (repeatable)")
    add_dataclass_options(emb, EmbeddingTrainConfig, EMBEDDING_FLAGS, TRAIN_HELP,
                          {"base": "gouache-tiny", "resolution": "the model's size"})
    emb.set_defaults(handler=run_embedding, field_flags={**EMBEDDING_FLAGS, **LOOP_FLAGS})

    cn = kinds.add_parser("controlnet", help="train a ControlNet on (image, control image, caption) triples "
                                             "(resumes from the last checkpoint)",
                          description="Train a ControlNet initialised from the base UNet's encoder, the base frozen. "
                                      "DATASET is a prepared folder whose metadata.jsonl has a conditioning_image "
                                      "column, any prepared folder with --preprocessor (control images made on the "
                                      "fly), or `shapes` (gouache-tiny's procedural dataset, with --preprocessor). "
                                      "Writes the diffusers folder OUT/NAME; copy it to $GOUACHE_HOME/controlnet.")
    cn.add_argument("dataset", metavar="DATASET", help="a prepared folder, or `shapes`")
    cn.add_argument("--out", required=True, help="run folder: checkpoints, validation grids, loss curve, the ControlNet")
    cn.add_argument("--embedding-channels", dest="embedding_channels", default=None, type=_channels, metavar="C1,C2,...",
                    help="channels of the control image's encoder, one per level, 3 downsamplings for 4 levels "
                         "(default: 16,32,96,256)")
    add_dataclass_options(cn, ControlNetTrainConfig, CONTROLNET_FLAGS, TRAIN_HELP,
                          {"base": "gouache-tiny", "resolution": "the model's size",
                           "preprocessor": "the dataset's conditioning_image column"})
    cn.set_defaults(handler=run_controlnet, field_flags={**CONTROLNET_FLAGS, **LOOP_FLAGS,
                                                        "embedding_channels": "--embedding-channels"})
    p.set_defaults(handler=lambda args: p.print_help() or 2)


COMMON_FLAGS = {
    "base": "--base", "steps": "--steps", "batch_size": "--batch-size", "lr": "--lr", "warmup_steps": "--warmup-steps",
    "grad_accum": "--grad-accum", "mixed_precision": "--mixed-precision", "resolution": "--resolution", "crop": "--crop",
    "flip": "--flip", "min_snr_gamma": "--min-snr-gamma", "noise_offset": "--noise-offset",
    "checkpoint_every": "--checkpoint-every", "checkpoint_minutes": "--checkpoint-minutes", "seed": "--seed",
    "overwrite": "--overwrite", "resume": "--resume",
}
LORA_FLAGS = {
    **COMMON_FLAGS, "name": "--name", "rank": "--rank", "alpha": "--alpha", "train_text_encoder": "--train-text-encoder",
    "text_encoder_lr": "--text-encoder-lr", "gradient_checkpointing": "--gradient-checkpointing",
    "cache_latents": "--cache-latents", "caption_dropout": "--caption-dropout", "optimizer": "--optimizer",
    "validation_every": "--validation-every", "validation_seed": "--validation-seed",
    "validation_steps": "--validation-steps", "save_dtype": "--save-dtype",
}
LCM_FLAGS = {
    **{k: v for k, v in LORA_FLAGS.items()
       if k not in ("train_text_encoder", "text_encoder_lr", "caption_dropout", "min_snr_gamma", "noise_offset")},
    "w_min": "--w-min", "w_max": "--w-max", "num_ddim_timesteps": "--ddim-timesteps", "huber_c": "--huber-c",
}
CONTROLNET_FLAGS = {
    **{k: v for k, v in COMMON_FLAGS.items() if k not in ("crop", "flip")}, "name": "--name",
    "preprocessor": "--preprocessor", "caption_dropout": "--caption-dropout", "optimizer": "--optimizer",
    "validation_count": "--validation-count", "validation_every": "--validation-every",
    "validation_seed": "--validation-seed", "validation_steps": "--validation-steps", "save_dtype": "--save-dtype",
}
# the training loop's own names for what the flags set (its messages name them)
LOOP_FLAGS = {"validate_every": "--validation-every"}
EMBEDDING_FLAGS = {**COMMON_FLAGS, "token": "--token", "init_word": "--init-word", "num_vectors": "--num-vectors",
                   "validation_every": "--validation-every", "validation_seed": "--validation-seed",
                   "validation_steps": "--validation-steps"}
TRAIN_HELP = {
    "base": "model to train on: a name in $GOUACHE_HOME/checkpoints or a path",
    "name": "file name of the LoRA, the NAME of <lora:NAME:1>",
    "rank": "LoRA rank (dimension)", "alpha": "LoRA alpha; the update is scaled by alpha/rank",
    "train_text_encoder": "also put LoRA layers on the text encoder", "text_encoder_lr": "learning rate of the text encoder",
    "steps": "optimizer steps", "batch_size": "images per step (per device)", "lr": "peak learning rate (cosine schedule)",
    "warmup_steps": "linear warm-up steps", "grad_accum": "gradient accumulation: micro-batches per optimizer step",
    "mixed_precision": "no, bf16 or fp16 (fp16 on CUDA only)",
    "gradient_checkpointing": "recompute activations in the backward pass: less memory, slower",
    "resolution": "training size", "crop": "center or random crops of images larger than the size",
    "flip": "mirror half the images at random", "cache_latents": "encode every image once (needs --crop center)",
    "caption_dropout": "fraction of captions replaced by the empty caption",
    "min_snr_gamma": "min-SNR loss weighting gamma (5 is usual); 0 off",
    "noise_offset": "noise offset (0.05-0.1 is usual); 0 off", "optimizer": "adamw or adamw8bit (bitsandbytes)",
    "checkpoint_every": "save a checkpoint every N steps; 0: by time only",
    "checkpoint_minutes": "save a checkpoint at least this often",
    "validation_every": "validation grid every N steps; 0: at the end only",
    "validation_seed": "seed of the first validation image", "validation_steps": "sampling steps of the validation images",
    "save_dtype": "dtype of the saved tensors: fp16, bf16, fp32", "seed": "seed of the run",
    "overwrite": "replace output files that exist",
    "resume": "continue the run in --out from its last complete checkpoint (running the same command again "
              "does this anyway; with --resume a missing checkpoint is an error)",
    "token": "the new token, as prompts will write it, e.g. \"<my-style>\"",
    "init_word": "a word whose embedding the vectors start from, e.g. \"circle\"",
    "num_vectors": "vectors the token takes in the prompt",
    "preprocessor": "make each control image from its image with this preprocessor (canny, softedge, ...)",
    "validation_count": "dataset items in each validation grid (control image | generated)",
    "w_min": "lowest guidance scale of the teacher (CFG convention; gouache-tiny's best is 5)",
    "w_max": "highest guidance scale of the teacher",
    "num_ddim_timesteps": "points of the teacher's skipped DDIM schedule (50: steps of 20 of 1000)",
    "huber_c": "the pseudo-Huber loss's c",
}


def _config(cls, args, flags, **fixed):
    given = {k: getattr(args, k) for k in flags if getattr(args, k, None) is not None}
    for k in ("targets", "save_format", "validation_prompts", "loss"):
        if getattr(args, k, None) is not None:
            given[k] = getattr(args, k)
    return cls(**fixed, **given)


def _lora_arguments(parser, targets_default: str, prompts_default: str) -> None:
    """The arguments `train lora` and `train lcm-lora` share."""
    parser.add_argument("dataset", metavar="DATASET", help="a folder made by `gouache dataset prepare`")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, validation grids, loss curve, the LoRA")
    parser.add_argument("--targets", choices=TARGETS, default=None,
                        help="attn: attention projections; transformer: every linear/conv of the transformer blocks; "
                             f"all: also the ResNet convolutions (LoCon) (default: {targets_default})")
    parser.add_argument("--format", dest="save_format", choices=FORMATS, default=None,
                        help="kohya (A1111/ComfyUI/diffusers), diffusers, or both (default: kohya)")
    parser.add_argument("--validation-prompt", dest="validation_prompts", action="append", default=None,
                        metavar="PROMPT", help=f"a prompt for the validation grid (repeatable{prompts_default})")


def run_lora(args) -> int:
    from gouache.train.lora import train_lora

    cfg = _config(LoraTrainConfig, args, LORA_FLAGS, dataset=args.dataset, out_dir=args.out)
    if cfg.cache_latents and cfg.crop != "center":
        from gouache.errors import InvalidArgument

        raise InvalidArgument("--cache-latents needs --crop center: random crops change at every step")
    path = train_lora(cfg, log=_log)
    print(f"LoRA: {path} (copy it to $GOUACHE_HOME/lora and write <lora:{cfg.name}:1> in a prompt)")
    return 0


def run_lcm_lora(args) -> int:
    from gouache.train.lcm import train_lcm_lora

    cfg = _config(LcmLoraTrainConfig, args, LCM_FLAGS, dataset=args.dataset, out_dir=args.out)
    if cfg.cache_latents and cfg.crop != "center":
        from gouache.errors import InvalidArgument

        raise InvalidArgument("--cache-latents needs --crop center: random crops change at every step")
    path = train_lcm_lora(cfg, log=_log)
    print(f"LCM-LoRA: {path} (copy it to $GOUACHE_HOME/lora; sample with <lora:{cfg.name}:1> --sampler LCM "
          f"--steps 4 --cfg 1)")
    return 0


def _channels(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers separated by commas, e.g. 16,32,64,128") from None


def run_controlnet(args) -> int:
    from gouache.train.controlnet import train_controlnet

    cfg = _config(ControlNetTrainConfig, args, CONTROLNET_FLAGS, dataset=args.dataset, out_dir=args.out)
    if args.embedding_channels is not None:
        cfg.embedding_channels = args.embedding_channels
    path = train_controlnet(cfg, log=_log)
    print(f"ControlNet: {path} (copy it to $GOUACHE_HOME/controlnet and use --control-model {cfg.name})")
    return 0


def run_embedding(args) -> int:
    from gouache.train.embedding import train_embedding

    cfg = _config(EmbeddingTrainConfig, args, EMBEDDING_FLAGS, dataset=args.dataset, out_dir=args.out)
    path = train_embedding(cfg, log=_log)
    print(f"embedding: {path} (copy it to $GOUACHE_HOME/embeddings and write {cfg.token} in a prompt)")
    return 0


def _log(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)


def run_base(args) -> int:
    from gouache.train.base import train_base

    given = {k: getattr(args, k) for k in BASE_FLAGS if getattr(args, k) is not None}
    cfg = dataclasses.replace(BaseTrainConfig(out_dir=args.out), **given)
    if args.extend_vae:
        from gouache.train.base import extend_vae_styles

        path = extend_vae_styles(args.extend_vae, cfg.out_dir, cfg.vae_styles_steps or 1200, cfg.vae_styles_lr,
                                 cfg.vae_batch_size, cfg.seed, cfg.checkpoint_minutes, log=_log)
        print(f"gouache-tiny weights: {path}")
        return 0
    path = train_base(cfg)
    print(f"gouache-tiny weights: {path}")
    return 0
