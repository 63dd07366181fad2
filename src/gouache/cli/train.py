"""``gouache train``: the trainers. ``base`` trains gouache-tiny from scratch; ``lora`` and
``embedding`` customise a model on a prepared dataset (``gouache dataset prepare``); ``lcm-lora``
distils a LoRA for few-step sampling; ``controlnet`` trains a ControlNet; ``clip`` and ``captioner``
train the built-in CLIP and captioner on the shapes pairs; ``ip-adapter`` trains an IP-Adapter;
``motion`` trains an AnimateDiff motion adapter on clips of the shapes world in motion.

The flags every trainer shares come from :class:`~gouache.train.config.TrainConfig` (the field
``warmup_steps`` is ``--warmup-steps``), less the fields a trainer does not take (its ``UNUSED``);
each trainer adds the flags of its own fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from gouache.train.base import BaseTrainConfig
from gouache.train.captioner import CaptionerTrainConfig
from gouache.train.clip import ClipTrainConfig
from gouache.train.clipseg import ClipSegTrainConfig
from gouache.train.config import TrainConfig
from gouache.train.controlnet import ControlNetTrainConfig
from gouache.train.embedding import EmbeddingTrainConfig
from gouache.train.ip_adapter import IPAdapterTrainConfig
from gouache.train.lcm import LOSSES, LcmLoraTrainConfig
from gouache.train.lora import FORMATS, TARGETS, LoraTrainConfig
from gouache.train.motion import MotionTrainConfig

BASE_FLAGS = {
    "dataset": "--dataset", "seed": "--seed", "vae_steps": "--vae-steps", "diffusion_steps": "--diffusion-steps",
    "vae_batch_size": "--vae-batch-size", "diffusion_batch_size": "--batch-size", "vae_lr": "--vae-lr",
    "diffusion_lr": "--lr", "mixed_precision": "--mixed-precision", "checkpoint_minutes": "--checkpoint-minutes",
    "vae_outline_fraction": "--vae-outline-fraction", "vae_styles_steps": "--vae-styles-steps", "vae_styles_lr": "--vae-styles-lr",
    "text_parts_steps": "--text-parts-steps", "text_parts_lr": "--text-parts-lr", "text_parts_keep": "--text-parts-keep",
}
# TrainConfig's fields, each as `--` and its name in kebab case, but these: arguments of their own
OWN_ARGUMENTS = {"dataset": "DATASET", "out_dir": "--out", "validation_prompts": "--validation-prompt"}
SHARED_HELP = {
    "base": "model to train on: a name in $GOUACHE_HOME/checkpoints or a path",
    "steps": "optimizer steps", "batch_size": "images per step (per device)", "lr": "peak learning rate (cosine schedule)",
    "warmup_steps": "linear warm-up steps", "grad_accum": "gradient accumulation: micro-batches per optimizer step",
    "mixed_precision": "no, bf16 or fp16 (fp16 on CUDA only)", "optimizer": "adamw or adamw8bit (bitsandbytes)",
    "resolution": "training size", "crop": "center or random crops of images larger than the size",
    "flip": "mirror half the images at random", "cache_latents": "encode every image once (needs --crop center)",
    "caption_dropout": "fraction of captions replaced by the empty caption",
    "min_snr_gamma": "min-SNR loss weighting gamma (5 is usual); 0 off",
    "noise_offset": "noise offset (0.05-0.1 is usual); 0 off",
    "checkpoint_every": "save a checkpoint every N steps; 0: by time only",
    "checkpoint_minutes": "save a checkpoint at least this often",
    "keep_checkpoints": "checkpoints kept: the newest and older ones to fall back to if it is damaged (at least 2)",
    "validation_every": "validation grid every N steps; 0: at the end only",
    "validation_seed": "seed of the first validation image", "validation_steps": "sampling steps of the validation images",
    "seed": "seed of the run", "overwrite": "replace output files that exist",
    "resume": "continue the run in --out from its last complete checkpoint (running the same command again "
              "does this anyway; with --resume a missing checkpoint is an error)",
}
SHARED_SHOWN = {"base": "gouache-tiny", "resolution": "the model's size"}
# the training loop's own names for what the flags set (its messages name them)
LOOP_FLAGS = {"validate_every": "--validation-every"}

LORA_FLAGS = {"name": "--name", "rank": "--rank", "alpha": "--alpha", "train_text_encoder": "--train-text-encoder",
              "text_encoder_lr": "--text-encoder-lr", "gradient_checkpointing": "--gradient-checkpointing",
              "save_dtype": "--save-dtype"}
LORA_HELP = {
    "name": "file name of the LoRA, the NAME of <lora:NAME:1>",
    "rank": "LoRA rank (dimension)", "alpha": "LoRA alpha; the update is scaled by alpha/rank",
    "train_text_encoder": "also put LoRA layers on the text encoder", "text_encoder_lr": "learning rate of the text encoder",
    "gradient_checkpointing": "recompute activations in the backward pass: less memory, slower",
    "save_dtype": "dtype of the saved tensors: fp16, bf16, fp32",
}
LCM_FLAGS = {**LORA_FLAGS, "w_min": "--w-min", "w_max": "--w-max", "num_ddim_timesteps": "--ddim-timesteps",
             "huber_c": "--huber-c"}
LCM_HELP = {
    **LORA_HELP,
    "w_min": "lowest guidance scale of the teacher (CFG convention; gouache-tiny's best is 5)",
    "w_max": "highest guidance scale of the teacher",
    "num_ddim_timesteps": "points of the teacher's skipped DDIM schedule (50: steps of 20 of 1000)",
    "huber_c": "the pseudo-Huber loss's c",
}
EMBEDDING_FLAGS = {"token": "--token", "init_word": "--init-word", "num_vectors": "--num-vectors"}
EMBEDDING_HELP = {
    "token": "the new token, as prompts will write it, e.g. \"<my-style>\"",
    "init_word": "a word whose embedding the vectors start from, e.g. \"circle\"",
    "num_vectors": "vectors the token takes in the prompt",
}
CONTROLNET_FLAGS = {"name": "--name", "preprocessor": "--preprocessor", "validation_count": "--validation-count",
                    "save_dtype": "--save-dtype"}
CONTROLNET_HELP = {
    "name": "folder name of the ControlNet, the NAME of --control-model NAME",
    "preprocessor": "make each control image from its image with this preprocessor (canny, softedge, ...)",
    "validation_count": "dataset items in each validation grid (control image | generated)",
    "save_dtype": "dtype of the saved tensors: fp16, bf16, fp32",
}
PAIRS_FLAGS = {"name": "--name", "save_dtype": "--save-dtype", "eval_n": "--eval-n"}
PAIRS_HELP = {
    "name": "folder name of the result in OUT",
    "save_dtype": "dtype of the saved weights: fp16, bf16, fp32",
    "eval_n": "images per set (seen pairs, held-out pairs) measured at each validation",
}
IP_ADAPTER_FLAGS = {"name": "--name", "image_encoder": "--image-encoder", "full_caption": "--full-caption",
                    "empty_text": "--empty-text", "outline": "--outline", "drop_image": "--drop-image",
                    "drop_text": "--drop-text", "drop_both": "--drop-both", "eval_n": "--eval-n",
                    "save_dtype": "--save-dtype", "init_weights": "--init-weights", "distill": "--distill",
                    "embed_noise": "--embed-noise",
                    "projection": "--projection"}
IP_ADAPTER_HELP = {
    "projection": "plain: h94's ip-adapter_sd15 layout (the image embedding, 4 tokens); plus: ip-adapter-plus_sd15's "
                  "(a Resampler of 16 queries on the image encoder's patch features); parts: the plain layout, two tokens "
                  "reading the embedding's colour part and two its shape part (so unseen pairs compose)",
    "name": "file name of the adapter (OUT/NAME.safetensors, h94's layout, and OUT/NAME.json)",
    "image_encoder": "the frozen image encoder: a CLIP model folder, gouache-tiny-clip, or a name in $GOUACHE_HOME/clip",
    "full_caption": "fraction of items whose text is the whole caption (the rest: \"on a {background} background\")",
    "empty_text": "fraction of items with no text: the image prompt alone",
    "outline": "fraction of items in outline style (the image prompt carries the style)",
    "drop_image": "IP-Adapter's drop-out: fraction of items whose image embedding is zeroed",
    "drop_text": "fraction of items whose text is dropped", "drop_both": "fraction with both dropped",
    "eval_n": "cases per set (seen pairs, held-out pairs) judged at each validation",
    "save_dtype": "dtype of the saved tensors: fp16, bf16, fp32",
    "init_weights": "start from this IP-Adapter file (h94's layout) instead of the base's to_k/to_v: fine-tune an "
                    "adapter further, or carry one over to a changed base",
    "embed_noise": "Gaussian noise added to each image embedding in training, relative to its RMS (0: off): the "
                   "adapter learns to read nearby embeddings alike (unCLIP's noise augmentation)",
    "distill": "weight (0-1) of the frozen base's prediction from the target's whole caption in the training target: "
               "the image prompt learns to do what the caption does (0: the plain noise target)",
}
MOTION_FLAGS = {"name": "--name", "frames": "--frames", "caption_form": "--caption-form", "motion_heads": "--motion-heads",
                "motion_layers": "--motion-layers", "eval_n": "--eval-n", "save_dtype": "--save-dtype",
                "timestep_bias": "--timestep-bias", "learn_words": "--learn-words", "words_lr": "--words-lr",
                "init_weights": "--init-weights", "x0_weight_cap": "--x0-weight-cap",
                "direction_contrast": "--direction-contrast", "text_lora": "--text-lora",
                "prior_start": "--prior-start", "text_readout": "--text-readout", "either_way": "--either-way",
                "readout_labels": "--readout-labels", "readout_lr": "--readout-lr",
                "either_way_max_size": "--either-way-max-size"}
MOTION_HELP = {
    "text_readout": "the motion modules read the prompt themselves (a small read-out of the text states added to each "
                    "module's input, and its neighbouring positions), so the words can say which way things move; "
                    "written beside the adapter (OUT/NAME/motion-text.safetensors) and applied with it by gouache video",
    "readout_labels": "with --text-readout: weight of a cross-entropy that teaches the readout which way each clip's "
                      "caption says it moves (the clips' own labels; 0: the readout learns from the denoising loss alone)",
    "readout_lr": "learning rate of the text readout (with --text-readout)",
    "either_way_max_size": "with --either-way: the largest of those clips' shapes, of the image side (from 0.31: the "
                           "larger, the better unseen colour-shape pairs are drawn, the less room to travel)",
    "either_way": "fraction of clips that start where they could go either way along their axis, so that only the "
                  "words tell the direction (0: every clip starts where only its own path fits)",
    "prior_start": "fraction of clips trained from a noisy input drawn afresh in the last tenth of the timesteps (where a sampler "
                   "starts from; an ordinary one still shows the clip's path), the noise it implies as the target "
                   "(0: off; with --x0-weight-cap)",
    "text_lora": "train a LoRA of this rank on the UNet's cross-attention with the adapter (0: off), so the caption's "
                 "direction reaches the motion modules; written beside it (OUT/NAME/cross-attention-lora.safetensors) "
                 "and applied with it by gouache video",
    "direction_contrast": "weight of a hinge that makes each clip's loss with its direction reversed worse than with its "
                          "own caption (0: off; twice the UNet passes)",
    "x0_weight_cap": "weight each clip's loss as the error of the clean clip it implies (1/SNR), at most this (0: "
                     "off): the high-noise steps, where the direction is decided, count",
    "learn_words": "train the token embeddings of the motion words (moving, left, right, up, down) with the adapter, "
                   "so the caption can tell the direction (captions without them encode as before); written to "
                   "OUT/NAME/motion-words.safetensors",
    "words_lr": "learning rate of the motion words (with --learn-words)",
    "init_weights": "start from this MotionAdapter folder (same size) instead of zeroed output projections (with "
                    "--text-readout, its text readout too when the folder has one)",
    "timestep_bias": "draw training timesteps towards high noise (density ∝ t^B; 0: uniform), where only the "
                     "caption tells which way the shape goes",
    "name": "folder name of the MotionAdapter in OUT (copy it to $GOUACHE_HOME/motion)",
    "frames": "frames per training clip (at most 32, the motion modules' positions)",
    "caption_form": "end: \"a red circle on a blue background, moving left\"; middle: \"a red circle moving left on a "
                    "blue background\" (gouache-tiny's frozen text encoder misreads the background there)",
    "motion_heads": "attention heads of each motion module (must divide the UNet's channels)",
    "motion_layers": "transformer layers of each motion module",
    "eval_n": "clips per set (seen pairs, held-out pairs) whose loss each validation measures",
    "save_dtype": "dtype of the saved tensors: fp16, bf16, fp32",
}
CLIP_FLAGS = {**PAIRS_FLAGS, "vision_width": "--vision-width", "vision_layers": "--vision-layers",
              "text_width": "--text-width", "text_layers": "--text-layers", "projection_dim": "--projection-dim",
              "patch_size": "--patch-size"}
CAPTIONER_FLAGS = {**PAIRS_FLAGS, "vision_width": "--vision-width", "vision_layers": "--vision-layers",
                   "text_width": "--text-width", "text_layers": "--text-layers", "patch_size": "--patch-size",
                   "word_noise": "--word-noise", "round_trip": "--round-trip", "grey": "--grey"}
CLIPSEG_FLAGS = {**PAIRS_FLAGS, "clip": "--clip", "reduce_dim": "--reduce-dim", "extract_layers": "--extract-layers",
                 "freeze_vision": "--freeze-vision", "dice": "--dice", "grey": "--grey"}
CLIPSEG_HELP = {
    **PAIRS_HELP,
    "clip": "the CLIP the model starts from: a name in $GOUACHE_HOME/clip or a folder",
    "reduce_dim": "width of the decoder (a multiple of 16)",
    "extract_layers": "the CLIP vision layers the decoder reads, comma-separated (0 is the first)",
    "dice": "weight of the Dice loss added to the per-pixel cross-entropy (0: cross-entropy alone)",
    "freeze_vision": "keep the CLIP's vision tower as it is (CLIPSeg's paper); by default it trains too",
    "grey": "of the queries that name no colour, the share shown in greys (queries naming an absent kind: all), "
            "so the kind is read from the outline, not guessed from the colour",
}
TOWER_HELP = {
    **PAIRS_HELP,
    "vision_width": "width of the vision transformer (a multiple of 32)", "vision_layers": "layers of the vision transformer",
    "text_width": "width of the text transformer (a multiple of 32)", "text_layers": "layers of the text transformer",
    "projection_dim": "width of the shared image-text embedding", "patch_size": "side of the image patches, in pixels",
    "word_noise": "fraction of the colours and shapes the decoder reads swapped for random ones (what it predicts stays)",
    "round_trip": "fraction of each batch's images passed through gouache-tiny's VAE (encoded and decoded), "
                  "so the captioner sees the softened images generations are",
    "grey": "fraction of each batch's images drawn in greys, their colour words left out of the loss, so the "
            "shape is read from the outline, not guessed from the colour",
}


@dataclass(frozen=True)
class TrainerCommand:
    """A ``gouache train NAME`` command: its config class and the flags of the fields it adds."""

    name: str
    config: type[TrainConfig]
    handler: Callable
    summary: str  # the one line of `gouache train --help`
    description: str
    dataset_help: str
    result: str  # what the run folder holds at the end, for --out's help: "the LoRA"
    flags: dict[str, str]  # its own fields -> flags
    help: dict[str, str]
    shown: dict[str, str] = field(default_factory=dict)  # what a field whose default is None ends up as
    prompts_help: str = "a prompt for the validation grid (repeatable)"


def shared_flags(config: type[TrainConfig]) -> dict[str, str]:
    """The flags of the :class:`TrainConfig` fields ``config`` takes."""
    return {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)
            if f.name not in OWN_ARGUMENTS and f.name not in config.UNUSED}


def add_trainer(kinds, cmd: TrainerCommand, extra_flags: dict[str, str] | None = None):
    """The subcommand of ``cmd``: DATASET, --out, --validation-prompt, the shared flags and its own;
    ``extra_flags``: arguments the caller adds itself (field -> flag), for the messages."""
    from gouache.cli.common import add_dataclass_options

    p = kinds.add_parser(cmd.name, help=cmd.summary, description=cmd.description)
    p.add_argument("dataset", metavar="DATASET", help=cmd.dataset_help)
    p.add_argument("--out", required=True, help=f"run folder: checkpoints, validation grids, loss curve, {cmd.result}")
    flags = {k: v for k, v in OWN_ARGUMENTS.items() if k not in cmd.config.UNUSED}
    if "validation_prompts" in flags:
        p.add_argument("--validation-prompt", dest="validation_prompts", action="append", default=None,
                       metavar="PROMPT", help=cmd.prompts_help)
    shared = shared_flags(cmd.config)
    own = {k: v for k, v in cmd.flags.items() if k not in cmd.config.UNUSED}
    add_dataclass_options(p, cmd.config, shared, SHARED_HELP, SHARED_SHOWN)
    add_dataclass_options(p, cmd.config, own, cmd.help, {**SHARED_SHOWN, **cmd.shown})
    flags.update(shared, **own, **LOOP_FLAGS, **(extra_flags or {}))
    p.set_defaults(handler=cmd.handler, field_flags=flags)
    return p


def register(sub) -> None:
    p = sub.add_parser("train", help="train models")
    kinds = p.add_subparsers(dest="trainer", metavar="TRAINER")
    _add_base(kinds)
    _add_lora(kinds)
    _add_lcm_lora(kinds)
    _add_embedding(kinds)
    _add_controlnet(kinds)
    _add_clip(kinds)
    _add_captioner(kinds)
    _add_clipseg(kinds)
    _add_ip_adapter(kinds)
    _add_motion(kinds)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _add_base(kinds) -> None:
    from gouache.cli.common import add_dataclass_options

    base = kinds.add_parser("base", help="train gouache-tiny from scratch (resumes from the last checkpoint)")
    base.add_argument("--out", required=True, help="run folder: checkpoints, logs and the final weights")
    add_dataclass_options(base, BaseTrainConfig, BASE_FLAGS, {"dataset": "procedural dataset: shapes"})
    base.add_argument("--extend-vae", metavar="PACKED", default=None,
                      help="extend the VAE of a packed gouache-tiny .safetensors trained without outlines (stage 3 alone, "
                           "--vae-styles-steps, 1200 by default)")
    base.add_argument("--extend-text", metavar="PACKED", default=None,
                      help="teach the text encoder of a packed gouache-tiny .safetensors the parts of a caption "
                           "(\"on a blue background\"), keeping whole captions as they were (stage 4 alone, "
                           "--text-parts-steps, 1500 by default)")
    base.set_defaults(handler=run_base, field_flags=BASE_FLAGS)


def _lora_arguments(parser, targets_default: str) -> None:
    """The arguments `train lora` and `train lcm-lora` add beyond their fields' flags."""
    parser.add_argument("--targets", choices=TARGETS, default=None,
                        help="attn: attention projections; transformer: every linear/conv of the transformer blocks; "
                             f"all: also the ResNet convolutions (LoCon) (default: {targets_default})")
    parser.add_argument("--format", dest="save_format", choices=FORMATS, default=None,
                        help="kohya (A1111/ComfyUI/diffusers), diffusers, or both (default: kohya)")


_LORA_EXTRA = {"targets": "--targets", "save_format": "--format"}
_LORA_SHOWN = {"alpha": "the rank", "text_encoder_lr": "--lr"}


def _add_lora(kinds) -> None:
    cmd = TrainerCommand(
        name="lora", config=LoraTrainConfig, handler=run_lora,
        summary="train a LoRA on a prepared dataset (resumes from the last checkpoint)",
        description="Train a LoRA with peft and accelerate; writes OUT/NAME.safetensors in kohya's layout (loads in "
                    "AUTOMATIC1111, ComfyUI and diffusers). Run it again with the same --out to resume; "
                    "`accelerate launch -m gouache train lora ...` for several GPUs.",
        dataset_help="a folder made by `gouache dataset prepare`", result="the LoRA",
        flags=LORA_FLAGS, help=LORA_HELP, shown=_LORA_SHOWN)
    _lora_arguments(add_trainer(kinds, cmd, _LORA_EXTRA), "transformer, kohya's")


def _add_lcm_lora(kinds) -> None:
    cmd = TrainerCommand(
        name="lcm-lora", config=LcmLoraTrainConfig, handler=run_lcm_lora,
        summary="distil an LCM-LoRA: 2-8 step sampling with the LCM sampler at CFG 1 (resumes from the last checkpoint)",
        description="Latent consistency distillation into a LoRA: the model with the LoRA off is the teacher (guided "
                    "DDIM steps over a skipped schedule), with it on the student. Writes OUT/NAME.safetensors in "
                    "kohya's layout; sample with <lora:NAME:1> (or --lora NAME:1), --sampler LCM, --steps 4, --cfg 1. "
                    "Run it again with the same --out to resume.",
        dataset_help="a folder made by `gouache dataset prepare`", result="the LoRA",
        flags=LCM_FLAGS, help=LCM_HELP, shown=_LORA_SHOWN,
        prompts_help="a prompt for the validation grid (repeatable; default: the dataset's first 4 captions)")
    parser = add_trainer(kinds, cmd, {**_LORA_EXTRA, "loss": "--loss"})
    _lora_arguments(parser, "all, as LCM-LoRA")
    parser.add_argument("--loss", choices=LOSSES, default=None,
                        help="huber: pseudo-Huber distance; l2: mean squared error (default: huber)")


def _add_embedding(kinds) -> None:
    add_trainer(kinds, TrainerCommand(
        name="embedding", config=EmbeddingTrainConfig, handler=run_embedding,
        summary="train a textual-inversion embedding (resumes from the last checkpoint)",
        description="Textual inversion: train the vectors of a new token, everything else frozen. Writes "
                    "OUT/NAME.safetensors (diffusers) and OUT/NAME.pt (AUTOMATIC1111); the captions must contain the "
                    "token.",
        dataset_help="a folder made by `gouache dataset prepare`", result="the files",
        flags=EMBEDDING_FLAGS, help=EMBEDDING_HELP,
        prompts_help="a prompt for the validation grid, with the token in it (repeatable)"))


def _add_controlnet(kinds) -> None:
    cmd = TrainerCommand(
        name="controlnet", config=ControlNetTrainConfig, handler=run_controlnet,
        summary="train a ControlNet on (image, control image, caption) triples (resumes from the last checkpoint)",
        description="Train a ControlNet initialised from the base UNet's encoder, the base frozen. DATASET is a "
                    "prepared folder whose metadata.jsonl has a conditioning_image column, any prepared folder with "
                    "--preprocessor (control images made on the fly), or `shapes` (gouache-tiny's procedural dataset, "
                    "with --preprocessor). Writes the diffusers folder OUT/NAME; copy it to $GOUACHE_HOME/controlnet. "
                    "Run it again with the same --out to resume.",
        dataset_help="a prepared folder, or `shapes`", result="the ControlNet",
        flags=CONTROLNET_FLAGS, help=CONTROLNET_HELP, shown={"preprocessor": "the dataset's conditioning_image column"})
    parser = add_trainer(kinds, cmd, {"embedding_channels": "--embedding-channels"})
    parser.add_argument("--embedding-channels", dest="embedding_channels", default=None, type=_channels,
                        metavar="C1,C2,...", help="channels of the control image's encoder, one per level, "
                                                  "3 downsamplings for 4 levels (default: 16,32,96,256)")


def _add_clip(kinds) -> None:
    add_trainer(kinds, TrainerCommand(
        name="clip", config=ClipTrainConfig, handler=run_clip,
        summary="train the built-in CLIP on the shapes pairs (resumes from the last checkpoint)",
        description="Train a small transformers CLIPModel (64x64 images, CLIP's tokenizer) from scratch with CLIP's "
                    "contrastive loss on the shapes world's captioned images, held-out pairs excluded. Writes the "
                    "transformers folder OUT/NAME; validation appends zero-shot rank-1 figures to "
                    "OUT/validation/figures.jsonl. Run it again with the same --out to resume.",
        dataset_help="`shapes`, gouache-tiny's procedural dataset", result="the CLIP folder",
        flags=CLIP_FLAGS, help=TOWER_HELP))


def _add_captioner(kinds) -> None:
    add_trainer(kinds, TrainerCommand(
        name="captioner", config=CaptionerTrainConfig, handler=run_captioner,
        summary="train the built-in captioner on the shapes pairs (resumes from the last checkpoint)",
        description="Train a small transformers BlipForConditionalGeneration from scratch, with teacher forcing, to "
                    "write the shapes world's captions (held-out pairs excluded). Writes the transformers folder "
                    "OUT/NAME with its BlipProcessor; validation appends exact-caption figures to "
                    "OUT/validation/figures.jsonl. Run it again with the same --out to resume.",
        dataset_help="`shapes`, gouache-tiny's procedural dataset", result="the captioner folder",
        flags=CAPTIONER_FLAGS, help=TOWER_HELP))


def _add_clipseg(kinds) -> None:
    add_trainer(kinds, TrainerCommand(
        name="clipseg", config=ClipSegTrainConfig, handler=run_clipseg,
        summary="train the built-in CLIPSeg (masks from words) on the shapes world (resumes from the last checkpoint)",
        description="Train a transformers CLIPSegForImageSegmentation whose CLIP starts as --clip (the built-in "
                    "gouache-tiny-clip) to mask what a query names on the shapes world's images: the {shape}, the "
                    "{colour} shape, the background, or nothing (held-out pairs excluded). Writes the transformers "
                    "folder OUT/NAME with its CLIPSegProcessor; validation appends mean-IoU figures to "
                    "OUT/validation/figures.jsonl. Run it again with the same --out to resume.",
        dataset_help="`shapes`, gouache-tiny's procedural dataset", result="the CLIPSeg folder",
        flags=CLIPSEG_FLAGS, help=CLIPSEG_HELP))


def _add_ip_adapter(kinds) -> None:
    add_trainer(kinds, TrainerCommand(
        name="ip-adapter", config=IPAdapterTrainConfig, handler=run_ip_adapter,
        summary="train an IP-Adapter on the shapes world (resumes from the last checkpoint)",
        description="Train an IP-Adapter (the image projection and a to_k_ip/to_v_ip per cross-attention layer) for a "
                    "frozen base, with a frozen image encoder (gouache-tiny-clip's vision tower by default): the image "
                    "prompt is another rendering of the target's shape, the text mostly its background. Writes "
                    "OUT/NAME.safetensors in h94's layout and OUT/NAME.json; copy both to $GOUACHE_HOME/ip-adapter. "
                    "Validation appends the judged bar to OUT/validation/figures.jsonl. Run it again with the same "
                    "--out to resume.",
        dataset_help="`shapes`, gouache-tiny's procedural dataset", result="the adapter",
        flags=IP_ADAPTER_FLAGS, help=IP_ADAPTER_HELP))


def _add_motion(kinds) -> None:
    add_trainer(kinds, TrainerCommand(
        name="motion", config=MotionTrainConfig, handler=run_motion,
        summary="train a motion adapter (AnimateDiff) on clips of the shapes world (resumes from the last checkpoint)",
        description="Train AnimateDiff motion modules (temporal attention after each UNet layer, their output "
                    "projections started at zero) for a frozen gouache-tiny, on 16-frame clips of a shape moving left, "
                    "right, up or down (held-out pairs excluded); --batch-size counts clips. Writes the diffusers "
                    "MotionAdapter folder OUT/NAME; copy it to $GOUACHE_HOME/motion. Validation appends the "
                    "denoising loss on fixed clips to OUT/validation/figures.jsonl. Run it again with the same --out "
                    "to resume.",
        dataset_help="`shapes`, gouache-tiny's procedural dataset (its clips in motion)", result="the motion adapter",
        flags=MOTION_FLAGS, help=MOTION_HELP))


def _config(cls: type[TrainConfig], args):
    """``cls`` with the fields the command line gave (every flag's default is None: not given)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if f.name not in ("dataset", "out_dir") and getattr(args, f.name, None) is not None}
    return cls(args.dataset, args.out, **given)


def run_lora(args) -> int:
    from gouache.train.lora import train_lora

    cfg = _config(LoraTrainConfig, args)
    path = train_lora(cfg, log=_log)
    print(f"LoRA: {path} (copy it to $GOUACHE_HOME/lora and write <lora:{cfg.name}:1> in a prompt)")
    return 0


def run_lcm_lora(args) -> int:
    from gouache.train.lcm import train_lcm_lora

    cfg = _config(LcmLoraTrainConfig, args)
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

    cfg = _config(ControlNetTrainConfig, args)
    path = train_controlnet(cfg, log=_log)
    print(f"ControlNet: {path} (copy it to $GOUACHE_HOME/controlnet and use --control-model {cfg.name})")
    return 0


def run_embedding(args) -> int:
    from gouache.train.embedding import train_embedding

    cfg = _config(EmbeddingTrainConfig, args)
    path = train_embedding(cfg, log=_log)
    print(f"embedding: {path} (copy it to $GOUACHE_HOME/embeddings and write {cfg.token} in a prompt)")
    return 0


def run_clip(args) -> int:
    from gouache.train.clip import train_clip

    path = train_clip(_config(ClipTrainConfig, args), log=_log)
    print(f"CLIP: {path} (transformers.CLIPModel.from_pretrained and CLIPProcessor.from_pretrained load it)")
    return 0


def run_captioner(args) -> int:
    from gouache.train.captioner import train_captioner

    path = train_captioner(_config(CaptionerTrainConfig, args), log=_log)
    print(f"captioner: {path} (transformers.BlipForConditionalGeneration and BlipProcessor load it)")
    return 0


def run_clipseg(args) -> int:
    from gouache.train.clipseg import train_clipseg

    path = train_clipseg(_config(ClipSegTrainConfig, args), log=_log)
    print(f"CLIPSeg: {path} (gouache mask --segmenter {path}; transformers.CLIPSegForImageSegmentation loads it)")
    return 0


def run_ip_adapter(args) -> int:
    from gouache.train.ip_adapter import train_ip_adapter

    cfg = _config(IPAdapterTrainConfig, args)
    path = train_ip_adapter(cfg, log=_log)
    print(f"IP-Adapter: {path} (copy it and {cfg.name}.json to $GOUACHE_HOME/ip-adapter; use --ip-adapter {cfg.name} "
          "--ip-image IMAGE)")
    return 0


def run_motion(args) -> int:
    from gouache.train.motion import train_motion

    cfg = _config(MotionTrainConfig, args)
    path = train_motion(cfg, log=_log)
    print(f"motion adapter: {path} (copy it to $GOUACHE_HOME/motion; diffusers.MotionAdapter.from_pretrained loads it)")
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
    if args.extend_text:
        from gouache.train.base import extend_text_parts

        path = extend_text_parts(args.extend_text, cfg.out_dir, cfg.text_parts_steps or 1500, cfg.text_parts_lr,
                                 cfg.vae_batch_size, cfg.seed, cfg.text_parts_keep,
                                 checkpoint_minutes=cfg.checkpoint_minutes, log=_log)
        print(f"gouache-tiny weights: {path}")
        return 0
    path = train_base(cfg)
    print(f"gouache-tiny weights: {path}")
    return 0
