"""``gouache train motion``: an AnimateDiff motion adapter for a frozen gouache-tiny, on clips of the
shapes world in motion.

What trains is AnimateDiff's (Guo et al., 2023): temporal transformer blocks ("motion modules",
self-attention across the frames at each spatial position, sinusoidal frame positions) after every
ResNet/attention pair of the UNet, held in a diffusers :class:`~diffusers.MotionAdapter` sized for the
base UNet (its ``block_out_channels``, ``layers_per_block`` and group norms; ``motion_max_seq_length``
32). Each module's output projection starts at zero, as AnimateDiff's ``zero_initialize`` does (diffusers
does not), so at step 0 the video model is exactly the image model. The adapter is put into the UNet
with ``UNetMotionModel.from_unet2d`` (:func:`motion_unet`); the UNet, VAE and text encoder stay frozen.

The loss is the usual denoising loss (:class:`~gouache.train.diffusion.DenoisingLoss`) on a batch of
clips' latents, (B, C, F, 8, 8), with one timestep per clip for all its frames as AnimateDiff trains,
on the one loop (:mod:`gouache.train.loop`: checkpoints of the adapter only, resume). The clips are
:class:`gouache.tiny.motion.MotionDataset`'s (held-out colour-shape pairs never appear).

Validation is cheap: the denoising loss on fixed seen and held-out clips with fixed noise, next to the
same loss with the direction in the caption reversed (a model that reads the direction does worse
there) and the image model's (the motion modules switched off), appended to
``OUT/validation/figures.jsonl``. The judged video bars are measured with ``gouache video``.

The result is a diffusers ``MotionAdapter`` folder ``OUT/NAME`` (``config.json``,
``diffusion_pytorch_model.safetensors`` in ``save_dtype``): copy it to ``$GOUACHE_HOME/motion``.

>>> train_motion(MotionTrainConfig("shapes", "runs/motion"))   # doctest: +SKIP
PosixPath('runs/motion/gouache-tiny-motion')
"""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from gouache.adapters.motion import CROSS_ATTENTION_LORA, MOTION_TEXT  # --text-lora's and --text-readout's, beside the weights
from gouache.errors import InvalidArgument, check_int, check_number
from gouache.tiny.motion import (CAPTION_FORMS, DEFAULT_FORM, DIRECTIONS, EITHER_WAY_SIZE, MotionDataset, clips_array,
                                 evaluation_specs, render)
from gouache.train.config import SAVE_DTYPES, TrainConfig, check_choice, check_name
from gouache.train.diffusion import DenoisingLoss, drop_captions, encode_captions, training_noise_scheduler
from gouache.train.driver import Trainer, run

SHAPES_DATASET = "shapes"
MAX_SEQ_LENGTH = 32  # frames the motion modules' positions cover (AnimateDiff's)
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
_EVAL_SEED = 12_345  # the validation noise's, fixed so that validations compare


@dataclass(kw_only=True)
class MotionTrainConfig(TrainConfig):
    """:class:`~gouache.train.config.TrainConfig` and what a motion adapter adds: the clips, the motion
    modules' size, the caption form and the validation's size. ``batch_size`` counts clips."""

    name: str = "gouache-tiny-motion"
    frames: int = 16  # frames per training clip
    batch_size: int = 4
    lr: float = 3e-4
    steps: int = 4000
    warmup_steps: int = 100
    caption_dropout: float = 0.1  # the empty caption: CFG's negative runs through the motion modules too
    caption_form: str = DEFAULT_FORM  # see gouache.tiny.motion.CAPTION_FORMS
    motion_heads: int = 8  # attention heads of each motion module (must divide every block's channels)
    motion_layers: int = 1  # transformer layers of each motion module
    validation_every: int = 500  # the validation is cheap (no video is sampled): watch the direction being learnt
    eval_n: int = 8  # clips per set (seen, held-out) in each validation
    save_dtype: str = "fp16"
    timestep_bias: float = 0.0  # > 0: training timesteps drawn towards high noise (density ∝ t^b), where only the words tell the direction
    learn_words: bool = False  # the motion words' token embeddings train too (see MotionWords)
    words_lr: float = 2e-3  # their learning rate (textual inversion's order)
    direction_contrast: float = 0.0  # > 0: weight of the hinge that makes the opposite direction's caption do worse
    x0_weight_cap: float = 0.0  # > 0: the loss weighted as the clean clip's error (1/SNR), capped (see DenoisingLoss)
    init_weights: str | None = None  # a MotionAdapter folder of the same size to start from (and its readout)
    prior_start: float = 0.0  # fraction of clips trained from a fresh last-timestep input (see DenoisingLoss)
    text_lora: int = 0  # > 0: rank of a LoRA on the UNet's cross-attention that trains too (see CROSS_ATTENTION_LORA)
    text_readout: bool = False  # the motion modules read the prompt themselves (gouache.adapters.motion_text), written beside
    either_way: float = 0.0  # fraction of clips that start where they could go either way (only the words tell which)
    readout_labels: float = 0.0  # > 0 (with text_readout): weight of a loss that teaches the readout the clips' direction
    readout_lr: float = 3e-3  # the readout's (and its label head's) learning rate: a tiny net reading a faint signal
    either_way_max_size: float = EITHER_WAY_SIZE[1]  # the largest either-way shape, of the side (the smallest: 0.31)

    UNUSED = ("resolution", "crop", "flip", "cache_latents", "validation_prompts", "validation_seed",
              "validation_steps")
    TRAINS = "motion adapter training"

    def validate(self) -> None:
        super().validate()
        if str(self.dataset) != SHAPES_DATASET:
            raise InvalidArgument(f"motion adapter training reads the procedural dataset `shapes` (clips of its "
                                  f"shapes in motion), got {self.dataset!r}")
        check_name("name", self.name, "folder")
        check_int("frames", self.frames, 2, MAX_SEQ_LENGTH)
        check_int("batch_size", self.batch_size, 1, 256)
        check_choice("caption_form", self.caption_form, CAPTION_FORMS)
        check_int("motion_heads", self.motion_heads, 1, 64)
        check_int("motion_layers", self.motion_layers, 1, 8)
        check_int("eval_n", self.eval_n, 0, 1000)
        check_choice("save_dtype", self.save_dtype, SAVE_DTYPES)
        check_number("timestep_bias", self.timestep_bias, 0, 8, " (0: uniform timesteps)")
        check_number("words_lr", self.words_lr, 0, 1)
        check_number("x0_weight_cap", self.x0_weight_cap, 0, 1000, " (0: the plain denoising loss)")
        check_number("direction_contrast", self.direction_contrast, 0, 100, " (0: off)")
        check_int("text_lora", self.text_lora, 0, 64)
        check_number("prior_start", self.prior_start, 0, 1, " (0: off)")
        check_number("either_way", self.either_way, 0, 1, " (0: every clip starts where only its own path fits)")
        check_number("readout_labels", self.readout_labels, 0, 100, " (0: off)")
        check_number("readout_lr", self.readout_lr, 0, 1)
        check_number("either_way_max_size", self.either_way_max_size, EITHER_WAY_SIZE[0], 0.45,
                     " (of the image side; the smallest either-way shape is 0.31)")
        if self.readout_labels and not self.text_readout:
            raise InvalidArgument("`readout_labels` teaches the text readout: add --text-readout")
        if self.init_weights is not None and not (Path(self.init_weights) / "config.json").is_file():
            raise InvalidArgument(f"`init_weights` {self.init_weights!r} is not a MotionAdapter folder (config.json "
                                  "and its weights): name the adapter folder a run wrote")

    def sizes(self) -> dict[str, str]:
        """What a resumed run must keep, keyed by flag."""
        # all recorded (the LoRA's and the words' weights are in the checkpoints too): a checkpoint from before an
        # option (no key) resumes with any value of it, but a run cannot drop or add one on resume
        out = {"--frames": str(self.frames), "--motion-heads": str(self.motion_heads),
               "--motion-layers": str(self.motion_layers), "--caption-form": self.caption_form,
               "--timestep-bias": f"{self.timestep_bias:g}", "--x0-weight-cap": f"{self.x0_weight_cap:g}",
               "--direction-contrast": f"{self.direction_contrast:g}", "--prior-start": f"{self.prior_start:g}",
               "--text-lora": str(self.text_lora), "--learn-words": "yes" if self.learn_words else "no",
               "--text-readout": "yes" if self.text_readout else "no", "--either-way": f"{self.either_way:g}",
               "--readout-labels": f"{self.readout_labels:g}"}
        if self.either_way:  # the clips' sizes (runs from before the option resume with any)
            out["--either-way-max-size"] = f"{self.either_way_max_size:g}"
        if self.init_weights is not None:
            from gouache.models.hashing import model_hash

            folder = Path(self.init_weights)
            files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
            out["--init-weights"] = model_hash(files[0]) if files else folder.name
        return out


def new_adapter(unet_config, heads: int = 8, layers: int = 1):
    """A ``MotionAdapter`` for a UNet with ``unet_config``, its output projections zeroed (AnimateDiff's
    start: the video model equals the image model). Raises InvalidArgument when ``heads`` does not
    divide the UNet's channels."""
    from diffusers import MotionAdapter

    channels = check_heads(unet_config, heads)
    adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=unet_config.layers_per_block,
                            motion_transformer_layers_per_block=layers, motion_transformer_layers_per_mid_block=layers,
                            motion_num_attention_heads=heads, motion_norm_num_groups=unet_config.norm_num_groups,
                            motion_max_seq_length=MAX_SEQ_LENGTH)
    with torch.no_grad():
        for proj in _output_projections(adapter):
            proj.weight.zero_()
            proj.bias.zero_()
    return adapter


def start_from(adapter, folder: Path) -> None:
    """Load the weights of the MotionAdapter in ``folder`` into ``adapter`` (a run continued with other
    settings, e.g. ``--learn-words`` on an adapter that already animates); one of another size is one
    clear line."""
    from diffusers import MotionAdapter

    loaded = MotionAdapter.from_pretrained(folder)
    theirs, mine = loaded.state_dict(), adapter.state_dict()
    wrong = [k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape]
    if loaded.config.motion_num_attention_heads != adapter.config.motion_num_attention_heads:
        wrong.insert(0, f"motion_num_attention_heads ({loaded.config.motion_num_attention_heads})")
    if wrong:
        raise InvalidArgument(f"{folder}: the adapter does not fit this run's size (--motion-heads, --motion-layers, "
                              f"the base's channels): {wrong[0]} differs")
    adapter.load_state_dict({k: theirs[k].to(v.dtype) for k, v in mine.items()})


def start_readout_from(readout, folder: Path) -> None:
    """The text readout beside the adapter in ``folder`` (:data:`~gouache.adapters.motion.MOTION_TEXT`),
    when it has one, loaded into ``readout`` (a readout run continued); one of another size is one clear
    line. Without one the readout starts afresh."""
    from gouache.adapters.motion_text import TextReadout

    if not (folder / MOTION_TEXT).is_file():
        return
    loaded = TextReadout.load(folder / MOTION_TEXT)
    mine, theirs = readout.state_dict(), loaded.state_dict()
    wrong = sorted(set(mine) ^ set(theirs)) + [k for k in theirs if k in mine and mine[k].shape != theirs[k].shape]
    if loaded.sideways != readout.sideways:
        wrong.append("sideways")
    if wrong:
        raise InvalidArgument(f"{folder / MOTION_TEXT}: the text readout does not fit this run's adapter "
                              f"({wrong[0]} differs)")
    readout.load_state_dict(theirs)


def check_heads(unet_config, heads: int) -> tuple[int, ...]:
    """The UNet's block channels, once ``heads`` divides each of them (else InvalidArgument)."""
    channels = tuple(unet_config.block_out_channels)
    if any(c % heads for c in channels):
        fits = [h for h in (1, 2, 4, 8, 16, 32) if not any(c % h for c in channels)]
        raise InvalidArgument(f"`motion_heads` must divide every block's channels {channels}, got {heads}; "
                              f"choose one of {', '.join(map(str, fits))}")
    return channels


def _output_projections(adapter) -> list[torch.nn.Linear]:
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    return [m.proj_out for m in adapter.modules() if isinstance(m, AnimateDiffTransformer3D)]


def motion_unet(unet, adapter):
    """``UNetMotionModel.from_unet2d(unet, adapter)`` whose motion modules *are* ``adapter``'s (shared,
    not copied: training the adapter trains this model), everything else a frozen copy of ``unet``.

    >>> video = motion_unet(pipe.unet, MotionAdapter.from_pretrained("gouache-tiny-motion"))  # doctest: +SKIP
    >>> video(latents_bcfhw, t, text_per_frame).sample.shape                                   # doctest: +SKIP
    """
    from diffusers import UNetMotionModel

    from gouache.models.registry import quiet_libraries

    with quiet_libraries():  # from_unet2d's cast warns that SD's layers have nothing to keep in fp32
        model = UNetMotionModel.from_unet2d(unet, adapter)
    model.requires_grad_(False)
    for mine, theirs in zip(model.down_blocks, adapter.down_blocks):
        mine.motion_modules = theirs.motion_modules
    for mine, theirs in zip(model.up_blocks, adapter.up_blocks):
        mine.motion_modules = theirs.motion_modules
    if adapter.mid_block is not None:
        model.mid_block.motion_modules = adapter.mid_block.motion_modules
    return model.eval()


@contextmanager
def motion_off(adapter):
    """The motion modules' output projections zeroed for the block's duration: the image model."""
    projections = _output_projections(adapter)
    saved = [(p.weight.detach().clone(), p.bias.detach().clone()) for p in projections]
    try:
        with torch.no_grad():
            for p in projections:
                p.weight.zero_()
                p.bias.zero_()
        yield
    finally:
        with torch.no_grad():
            for p, (w, b) in zip(projections, saved):
                p.weight.copy_(w)
                p.bias.copy_(b)


_CROSS_ATTENTION = re.compile(r"attentions\.\d+\.transformer_blocks\.\d+\.attn2\.(to_q|to_k|to_v|to_out\.0)$")


def cross_attention_targets(unet) -> list[str]:
    """Names of the UNet's cross-attention projections (``attn2``'s query, key, value and output; the
    motion modules' attention is self-attention and is not among them)."""
    return [n for n, m in unet.named_modules()
            if isinstance(m, torch.nn.Linear) and _CROSS_ATTENTION.search(n) and "motion_modules" not in n]


LABEL_BATCH = 64  # --readout-labels: captions per step
LABEL_OFFSET = 1 << 40  # their clips' indices, apart from the training clips'
CONTRAST_MARGIN = 0.02  # --direction-contrast: how much worse (a fraction of the loss) the opposite caption must do


def reverse_direction(caption: str) -> str:
    """``caption`` with its direction reversed ("…, moving left" → "…, moving right")."""
    head, sep, tail = caption.rpartition("moving ")
    if not sep:
        raise ValueError(f"no direction in caption {caption!r}")
    word = tail.partition(" ")[0].rstrip(",")
    return f"{head}moving {OPPOSITE[word]}{tail[len(word):]}"


MOTION_WORDS = ("moving", *DIRECTIONS)  # the words of a motion caption that image captions do not have
WORDS_FILE = "motion-words.safetensors"


class MotionWords(torch.nn.Module):
    """Token embeddings of ``words`` (one token each) that train with the motion adapter.

    gouache-tiny's text encoder never saw "moving", "left", "right", "up" or "down": their embedding rows
    are still the random ones it started with, and what the frozen UNet makes of them differs by a few
    per cent between directions. Training these rows alone (textual inversion of existing words) lets
    the caption carry the direction as strongly as the adapter needs, while every caption without them
    encodes bit for bit as before (the rows are only read where the words are). :meth:`install` puts
    the trained rows in front of the text encoder's embedding lookup; :func:`fold_words` writes them into
    a model file for good.
    """

    def __init__(self, text_encoder, tokenizer, words: tuple[str, ...] = MOTION_WORDS):
        super().__init__()
        ids = []
        for word in words:
            token = tokenizer(word, add_special_tokens=False).input_ids
            if len(token) != 1:
                raise InvalidArgument(f"the motion word {word!r} is {len(token)} tokens for this tokenizer; "
                                      "--learn-words needs one token per word")
            ids.append(token[0])
        self.words = tuple(words)
        self.register_buffer("ids", torch.tensor(ids), persistent=False)
        table = text_encoder.get_input_embeddings().weight
        self.vectors = torch.nn.Parameter(table[self.ids].detach().clone().float())

    def install(self, text_encoder):
        """Replace the words' rows in ``text_encoder``'s lookup by :attr:`vectors` (a forward hook)."""

        def swap(module, args, out):
            ids = args[0]
            hit = ids.unsqueeze(-1) == self.ids  # (..., words)
            if not bool(hit.any()):
                return out
            chosen = (hit.to(self.vectors.dtype) @ self.vectors).to(out.dtype)
            return torch.where(hit.any(-1, keepdim=True), chosen, out)

        return text_encoder.get_input_embeddings().register_forward_hook(swap)

    def state(self) -> dict[str, torch.Tensor]:
        """``{word: (1, width)}``: diffusers' embedding layout, one entry per word."""
        return {w: v.detach().clone().unsqueeze(0).contiguous() for w, v in zip(self.words, self.vectors)}


def fold_words(text_encoder, tokenizer, words: dict[str, torch.Tensor]) -> None:
    """Write trained word vectors (``{word: (1, width)}``, :meth:`MotionWords.state`) into the rows of
    ``text_encoder``'s token embedding, in place."""
    table = text_encoder.get_input_embeddings().weight
    for word, vector in words.items():
        token = tokenizer(word, add_special_tokens=False).input_ids
        if len(token) != 1 or vector.shape[-1] != table.shape[1]:
            raise InvalidArgument(f"the word vector {word!r} does not fit this text encoder (one token of width "
                                  f"{table.shape[1]} expected)")
        with torch.no_grad():
            table[token[0]] = vector.reshape(-1).to(table.dtype)


class MotionObjective(Trainer):
    """A motion adapter trained with the base UNet, VAE and text encoder frozen."""

    name = "motion"
    makes = "motion adapters"
    sdxl_hint = " (SDXL motion adapters load and run)"
    config_file = "motion_config.json"
    validation_kind = "figures"

    def __init__(self, cfg: MotionTrainConfig, model, dataset: MotionDataset):
        super().__init__(cfg, model, dataset)
        self.unet, self.vae, self.text_encoder, self.tokenizer = self.frozen_base(model)
        self.adapter = new_adapter(self.unet.config, cfg.motion_heads, cfg.motion_layers)
        if cfg.init_weights is not None:
            start_from(self.adapter, Path(cfg.init_weights))
        self.motion = motion_unet(self.unet, self.adapter)
        parts = {"adapter": self.adapter}
        if cfg.text_lora:
            from peft import LoraConfig

            self.motion.add_adapter(LoraConfig(r=cfg.text_lora, lora_alpha=cfg.text_lora,
                                               target_modules=cross_attention_targets(self.motion)))
            self.adapter.requires_grad_(True)  # peft froze everything but its own layers, the shared modules too
            parts["lora"] = self.motion  # its trainable parameters past the adapter's are the LoRA's
        self.words = None
        if cfg.learn_words:
            self.words = MotionWords(self.text_encoder, self.tokenizer)
            self.words.install(self.text_encoder)
            parts["words"] = self.words
        self.readout = None
        if cfg.text_readout:
            self.readout = self.steer_modules()
            if cfg.init_weights is not None:
                start_readout_from(self.readout, Path(cfg.init_weights))
            parts["readout"] = self.readout
            if cfg.readout_labels:  # training only: which way the caption says (or none), from the readout's vector
                self.label_head = torch.nn.Linear(self.readout.out[0].in_features, len(DIRECTIONS) + 1)  # reads the code
                parts["readout_head"] = self.label_head
        self._trainable = torch.nn.ModuleDict(parts) if len(parts) > 1 else self.adapter
        self.loss_fn = DenoisingLoss(training_noise_scheduler(model.scheduler_config), cfg.min_snr_gamma, cfg.noise_offset,
                                     cfg.timestep_bias, cfg.x0_weight_cap, cfg.prior_start)
        self._eval: dict | None = None  # the validation clips' latents and captions, made once

    def steer_modules(self):
        """A :class:`~gouache.adapters.motion_text.TextReadout` for the adapter, hooked into the video UNet:
        each call's text states are read out once, and each motion module attends over its steered input
        with its residual on the input as it was — what ``gouache video`` does (:meth:`LoadedMotion.installed`)."""
        from gouache.adapters.motion import motion_modules
        from gouache.adapters.motion_text import Steering, TextReadout, text_of_call

        modules = motion_modules(self.adapter)
        readout = TextReadout(self.text_encoder.config.hidden_size, [m.proj_in.in_features for m in modules])
        steering, kept = Steering(readout), {}
        self.motion.register_forward_pre_hook(lambda m, args, kwargs: steering.read(text_of_call(args, kwargs)),
                                              with_kwargs=True)
        for index, module in enumerate(modules):
            def before(m, args, kwargs, index=index):
                h = args[0]
                x = steering.steer(h, index)
                kept[index] = h - x
                return (x, *args[1:]), kwargs

            def after(m, args, kwargs, out, index=index):
                return out + kept.pop(index)

            module.register_forward_pre_hook(before, with_kwargs=True)
            module.register_forward_hook(after, with_kwargs=True)
        return readout

    @classmethod
    def outputs(cls, cfg: MotionTrainConfig) -> list[Path]:
        return [Path(cfg.out_dir) / cfg.name]

    @classmethod
    def load_data(cls, cfg: MotionTrainConfig, model) -> MotionDataset:
        if model.native_size != 64:
            raise InvalidArgument(f"the shapes clips are 64x64; {model.name} makes {model.native_size}px images "
                                  "(train motion adapters for gouache-tiny, the default --base)")
        check_heads(model.unet.config, cfg.motion_heads)  # before the run writes anything
        return MotionDataset(seed=cfg.seed, frames=cfg.frames, form=cfg.caption_form, either_way=cfg.either_way,
                             either_way_max_size=cfg.either_way_max_size)

    @classmethod
    def resume_settings(cls, cfg: MotionTrainConfig) -> dict[str, str]:
        return cfg.sizes()

    def trainable(self):
        return self._trainable

    def param_groups(self, model, lr: float) -> list[dict]:
        """The adapter and the cross-attention LoRA at ``lr``; the text readout and the words at their own
        learning rates, without weight decay (the words' rows are not near zero)."""
        adapter = [p for p in self.adapter.parameters() if p.requires_grad]
        if self.cfg.text_lora:
            adapter += [p for n, p in self.motion.named_parameters() if p.requires_grad and ".lora_" in n]
        if self.readout is not None:  # the per-module maps at the adapter's rate, what reads the text at its own
            adapter += list(self.readout.out.parameters())
        groups = [{"params": adapter}]
        if self.readout is not None:
            reader = self.readout.reader() + (list(self.label_head.parameters()) if self.cfg.readout_labels else [])
            groups.append({"params": reader, "lr": self.cfg.readout_lr, "weight_decay": 0.0})
        if self.words is not None:
            groups.append({"params": [self.words.vectors], "lr": self.cfg.words_lr, "weight_decay": 0.0})
        return groups if len(groups) > 1 else adapter

    @contextmanager
    def image_model(self):
        """The base image model for the block's duration: the motion modules' outputs zeroed, the LoRA off."""
        with motion_off(self.adapter):
            if not self.cfg.text_lora:
                yield
                return
            self.motion.disable_adapters()
            try:
                yield
            finally:
                self.motion.enable_adapters()

    @torch.no_grad()
    def latents(self, clips) -> torch.Tensor:
        """The scaled VAE latents of clips (lists of frames) as (B, C, F, h, w)."""
        from gouache.models.latents import to_latents

        pixels = torch.from_numpy(clips_array(clips))  # (B, F, 3, H, W)
        b, f = pixels.shape[:2]
        raw = self.vae.encode(pixels.flatten(0, 1).to(self.vae.dtype)).latent_dist.sample()
        return to_latents(self.vae, raw).unflatten(0, (b, f)).transpose(1, 2)

    def text(self, captions: list[str], frames: int) -> torch.Tensor:
        """The captions' hidden states, one copy per frame ((B·F, 77, D): UNetMotionModel's input)."""
        with torch.set_grad_enabled(self.words is not None and torch.is_grad_enabled()):
            return encode_captions(self.tokenizer, self.text_encoder, captions).repeat_interleave(frames, 0)

    def loss(self, model, index: int) -> torch.Tensor:
        """The denoising loss of batch ``index``; with ``direction_contrast`` λ, plus λ times a hinge on
        each clip: its loss with the caption's direction reversed, from the same noisy clip, must be
        worse than with its own caption by at least ``CONTRAST_MARGIN`` of it. Only the direction
        tells the two captions apart, so that term's gradient is the part of the loss the direction
        explains, which the plain loss mixes with everything else a clip's noise leaves unknown."""
        n = self.cfg.batch_size
        clips = [self.dataset[index * n + k] for k in range(n)]
        latents = self.latents([c.frames for c in clips])
        captions = drop_captions([c.caption for c in clips], self.cfg.caption_dropout, index)
        labels = self.label_loss(index) if self.cfg.readout_labels else 0.0
        if not self.cfg.direction_contrast:
            return self.loss_fn(self.motion, latents, self.text(captions, self.cfg.frames)) + labels
        noisy, t, target = self.loss_fn.noised(latents)
        t_in = t.to(latents.device)
        own = self.loss_fn.per_item(self.motion(noisy, t_in, self.text(captions, self.cfg.frames)).sample, target, t)
        opposite = [reverse_direction(c) if c else c for c in captions]
        other = self.loss_fn.per_item(self.motion(noisy, t_in, self.text(opposite, self.cfg.frames)).sample, target, t)
        hinge = torch.relu(own - other + CONTRAST_MARGIN * own.detach())
        hinge = hinge * own.new_tensor([1.0 if c else 0.0 for c in captions])  # a dropped caption has no direction
        return own.mean() + self.cfg.direction_contrast * hinge.mean() + labels

    def label_loss(self, index: int) -> torch.Tensor:
        """``readout_labels`` times the cross-entropy of the directions of ``LABEL_BATCH`` captions of batch
        ``index`` (clips' captions, not rendered; every tenth empty: none), predicted from the readout's
        vector. The direction word moves gouache-tiny's text states by about 1 % of their variance at its
        token (the colours and shapes before it, read through the causal attention, the rest): from the
        denoising loss of 4 clips alone the readout does not find it; from 64 labelled captions a step
        at ``readout_lr`` it does in a few hundred steps."""
        directions = list(DIRECTIONS)
        specs = [self.dataset.spec(LABEL_OFFSET + index * LABEL_BATCH + k) for k in range(LABEL_BATCH)]
        captions = [s.captioned(self.cfg.caption_form) if k % 10 else "" for k, s in enumerate(specs)]
        target = torch.tensor([directions.index(s.direction) if text else len(directions)
                               for s, text in zip(specs, captions)])
        logits = self.label_head(self.readout(self.text(captions, 1)))
        return self.cfg.readout_labels * torch.nn.functional.cross_entropy(logits, target)

    @torch.no_grad()
    def fixed_loss(self, latents: torch.Tensor, captions: list[str]) -> float:
        """The denoising loss with the validation's fixed noise and timesteps."""
        with torch.random.fork_rng():
            torch.manual_seed(_EVAL_SEED)
            return float(self.loss_fn(self.motion, latents, self.text(captions, latents.shape[2])))

    def _eval_sets(self) -> dict:
        if self._eval is None:
            self._eval = {}
            for name in ("seen", "held_out"):
                specs = evaluation_specs(name == "held_out", self.cfg.eval_n, self.cfg.seed, self.cfg.frames)
                with torch.random.fork_rng():
                    torch.manual_seed(_EVAL_SEED)
                    latents = self.latents([render(s) for s in specs])
                form = self.cfg.caption_form
                right = [s.captioned(form) for s in specs]
                wrong = [dataclasses.replace(s, direction=OPPOSITE[s.direction]).captioned(form) for s in specs]
                with self.image_model():
                    image_model = self.fixed_loss(latents, right)
                self._eval[name] = (latents, right, wrong, image_model)
        return self._eval

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path | None:
        """The fixed clips' losses (see the module docstring), appended to ``folder/figures.jsonl``."""
        if not self.cfg.eval_n:
            return None
        row = {"step": step}
        for name, (latents, right, wrong, image_model) in self._eval_sets().items():
            row[name] = {"loss": round(self.fixed_loss(latents, right), 5),
                         "opposite_direction": round(self.fixed_loss(latents, wrong), 5),
                         "image_model": round(image_model, 5)}
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "figures.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        return folder / "figures.jsonl"

    def finish(self, model, out_dir: Path) -> Path:
        from safetensors.torch import save

        from gouache.train.controlnet import save_controlnet  # writes any diffusers model folder atomically

        extra = {}
        if isinstance(model, torch.nn.ModuleDict):
            model = model["adapter"]
        if self.words is not None:  # beside the adapter (gouache video does not read them: fold_words does)
            extra[WORDS_FILE] = save(self.words.state(), metadata={"base": str(self.cfg.base)})
        if self.cfg.text_lora:  # beside the adapter, in kohya's layout: gouache video applies it with the adapter
            extra[CROSS_ATTENTION_LORA] = save(*self.lora_file())
        if self.readout is not None:  # beside the adapter: gouache video hands the prompt to the modules through it
            extra[MOTION_TEXT] = self.readout.save_bytes(SAVE_DTYPES[self.cfg.save_dtype])
        return save_controlnet(model, Path(out_dir) / self.cfg.name, SAVE_DTYPES[self.cfg.save_dtype],
                               self.cfg.overwrite, extra)

    def lora_file(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The cross-attention LoRA as kohya's tensors and header (any SD 1.x LoRA loader reads it)."""
        from peft import get_peft_model_state_dict

        from gouache.train.lora import kohya_state_dict

        rank = self.cfg.text_lora
        state = kohya_state_dict(get_peft_model_state_dict(self.motion), {}, rank, SAVE_DTYPES[self.cfg.save_dtype])
        meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": f"{rank:.1f}",
                "ss_base_model_version": "sd_v1", "ss_sd_model_name": str(self.cfg.base),
                "ss_output_name": f"{self.cfg.name}-cross-attention", "ss_max_train_steps": str(self.cfg.steps),
                "ss_training_comment": "trained with gouache train motion --text-lora: applied with the motion adapter",
                "gouache_motion_adapter": self.cfg.name}
        return state, meta


def train_motion(cfg: MotionTrainConfig, log=print) -> Path:
    """Train (or resume) a motion adapter; returns the ``MotionAdapter`` folder written."""
    return run(cfg, MotionObjective, log)
