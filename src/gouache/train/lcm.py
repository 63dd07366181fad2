"""``gouache train lcm-lora``: distil an LCM-LoRA from a model, for 2-8 step sampling at CFG 1.

Latent consistency distillation (Luo et al., 2023, "LCM-LoRA"). The model with the LoRA disabled
is the *teacher*; with the LoRA enabled it is the *student*, which learns to map any point of the
teacher's guided probability-flow ODE straight to its end, so that the ``LCM`` sampler needs only a
few steps and no classifier-free guidance at sampling time. One training step, per image:

1. the teacher's schedule is skipped to ``num_ddim_timesteps`` points (50 of 1000: ``k = 20``); a
   point ``n`` is drawn, the latents are noised to ``t = t_n`` and ``s = t - k`` is the previous one;
2. the student predicts at ``(x_t, t)``; with the boundary-condition scalings of the LCM scheduler,
   ``f(x_t, t) = c_skip(t) · x_t + c_out(t) · x̂0(x_t, t)`` (``c_skip(0) = 1``, ``c_out(0) = 0``);
3. the teacher predicts with and without the caption at ``(x_t, t)``, guided by a scale ``g`` drawn
   uniformly from ``[w_min, w_max]`` (gouache's CFG convention, ``uncond + g · (cond - uncond)``; the
   paper's and diffusers' ``w`` is ``g - 1``), and one DDIM step from ``t`` to ``s`` gives ``x_s``;
4. the target is the student itself, without gradients, at ``(x_s, s)``: ``f(x_s, s)``;
5. the loss is the pseudo-Huber distance (``sqrt(d² + c²) - c``, ``c = 0.001``) or the MSE.

Everything else is the LoRA trainer's (:mod:`gouache.train.lora`): the data, peft's layers (on
every linear and convolution, ``--targets all``, by default), the kohya-layout file with its
``ss_*`` header, checkpoints and resume in the one loop of :mod:`gouache.train.loop`. Validation
grids are drawn as the LoRA will be used: the ``LCM`` sampler, 4 steps, CFG 1.

>>> cfg = LcmLoraTrainConfig(dataset="data/shapes", out_dir="runs/lcm", name="tiny-lcm")  # doctest: +SKIP
>>> train_lcm_lora(cfg)                                                                    # doctest: +SKIP
PosixPath('runs/lcm/tiny-lcm.safetensors')
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gouache.errors import InvalidArgument, check_int, check_number
from gouache.sampling.prediction import predicted_noise, predicted_x0
from gouache.train.config import check_choice
from gouache.train.diffusion import encode_captions
from gouache.train.driver import run
from gouache.train.lora import LoraObjective, LoraTrainConfig, save_lora, validation_grid

LOSSES = ("huber", "l2")
TIMESTEP_SCALING = 10.0  # diffusers' LCMScheduler default: c_skip/c_out take t · 10
SIGMA_DATA = 0.5


@dataclass(kw_only=True)
class LcmLoraTrainConfig(LoraTrainConfig):
    """:class:`LoraTrainConfig` with the distillation's settings; the UNet only (no text encoder)."""

    name: str = "lcm-lora"
    rank: int = 16
    targets: str = "all"
    lr: float = 1e-4
    w_min: float = 3.0  # guidance scale of the teacher, gouache's CFG convention (gouache-tiny's best is 5)
    w_max: float = 7.0
    num_ddim_timesteps: int = 50  # the skipped schedule (LCMScheduler's original_inference_steps)
    loss: str = "huber"
    huber_c: float = 0.001
    validation_steps: int = 4
    validation_sampler: str = "LCM"
    validation_cfg: float = 1.0

    UNUSED = ("caption_dropout", "min_snr_gamma", "noise_offset", "train_text_encoder", "text_encoder_lr")
    TRAINS = "LCM distillation"

    def validate(self) -> None:
        if self.train_text_encoder:
            raise InvalidArgument("an LCM-LoRA trains the UNet only; drop `train_text_encoder`")
        super().validate()
        check_number("w_min", self.w_min, 0, 100)
        check_number("w_max", self.w_max, self.w_min, 100, " (and at least `w_min`)")
        check_int("num_ddim_timesteps", self.num_ddim_timesteps, 1, 1000)
        check_choice("loss", self.loss, LOSSES)
        check_number("huber_c", self.huber_c, 1e-9, 1)
        check_number("validation_cfg", self.validation_cfg, 0, 30)


def boundary_scalings(t: torch.Tensor, timestep_scaling: float = TIMESTEP_SCALING,
                      sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out)`` at timesteps ``t``, as diffusers' LCMScheduler applies them when sampling."""
    scaled = t.float() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


class DDIMSolver:
    """The teacher's schedule skipped to ``n`` points and one deterministic DDIM step between them."""

    def __init__(self, alphas_cumprod: torch.Tensor, num_train_timesteps: int, n: int):
        k = num_train_timesteps // n
        self.k = k
        self.timesteps = torch.arange(1, n + 1) * k - 1  # k-1, 2k-1, ..., the last one T-1 for n | T
        self.alphas_cumprod = alphas_cumprod.float()
        ac = self.alphas_cumprod[self.timesteps]
        self.alphas_prev = torch.cat([self.alphas_cumprod[:1], ac[:-1]])  # ᾱ at s = t - k (ᾱ_0 below the first)

    def previous(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.k).clamp(min=0)

    def step(self, x0: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        a = self.alphas_prev[index].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps


@contextmanager
def adapters_disabled(unet):
    """The base UNet (the teacher): the LoRA layers bypassed, re-enabled (and trainable) on exit."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


class LcmLoraObjective(LoraObjective):
    """The LoRA trained as an LCM-LoRA: the student against the teacher's guided DDIM step."""

    name = "lcm-lora"

    def __init__(self, cfg: LcmLoraTrainConfig, model, dataset):
        super().__init__(cfg, model, dataset)
        sched = self.loss_fn.noise_scheduler
        self.alphas_cumprod = sched.alphas_cumprod.float()
        self.prediction_type = sched.config.prediction_type
        self.solver = DDIMSolver(self.alphas_cumprod, sched.config.num_train_timesteps, cfg.num_ddim_timesteps)
        with torch.no_grad():
            self.uncond = encode_captions(self.tokenizer, self.text_encoder, [""])
        if not cfg.validation_prompts:  # the dataset's first captions, drawn the way the LoRA will be used
            seen = dict.fromkeys(caption for _, caption in dataset.items)
            cfg.validation_prompts = list(seen)[:4]

    def consistency(self, unet, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``f(x, t) = c_skip(t) · x + c_out(t) · x̂0``: the consistency function the LoRA learns."""
        out = unet(x, t, hidden).sample.float()
        x0 = predicted_x0(out, x.float(), self.alphas_cumprod[t].view(-1, 1, 1, 1), self.prediction_type)
        c_skip, c_out = (c.view(-1, 1, 1, 1) for c in boundary_scalings(t))
        return c_skip * x.float() + c_out * x0

    @torch.no_grad()
    def teacher_step(self, x_t: torch.Tensor, t: torch.Tensor, index: torch.Tensor, hidden: torch.Tensor,
                     guidance: torch.Tensor) -> torch.Tensor:
        """One guided DDIM step of the base model (LoRA off) from ``t`` to ``t - k``."""
        n = x_t.shape[0]
        with adapters_disabled(self.unet):
            out = self.unet(torch.cat([x_t, x_t]), torch.cat([t, t]),
                            torch.cat([hidden, self.uncond.expand(n, -1, -1)])).sample.float()
        x, alpha_bar = torch.cat([x_t, x_t]).float(), self.alphas_cumprod[torch.cat([t, t])].view(-1, 1, 1, 1)
        x0 = predicted_x0(out, x, alpha_bar, self.prediction_type)
        eps = predicted_noise(out, x, alpha_bar, self.prediction_type)
        g = guidance.view(-1, 1, 1, 1)
        x0 = x0[n:] + g * (x0[:n] - x0[n:])
        eps = eps[n:] + g * (eps[:n] - eps[n:])
        return self.solver.step(x0, eps, index)

    def loss(self, model, index):
        cfg = self.cfg
        unet = model["unet"]
        latents, captions = self.latents.batch(index, cfg.batch_size)
        with torch.no_grad():
            hidden = encode_captions(self.tokenizer, self.text_encoder, captions)
        n = latents.shape[0]
        step = torch.randint(0, len(self.solver.timesteps), (n,))
        t = self.solver.timesteps[step]
        s = self.solver.previous(t)
        noise = torch.randn_like(latents)
        x_t = self.loss_fn.noise_scheduler.add_noise(latents, noise, t)
        guidance = cfg.w_min + (cfg.w_max - cfg.w_min) * torch.rand(n)
        x_s = self.teacher_step(x_t, t, step, hidden, guidance).to(latents.dtype)
        with torch.no_grad():
            target = self.consistency(unet, x_s, s, hidden)  # the student, LoRA on, without gradients
        pred = self.consistency(unet, x_t, t, hidden)
        if cfg.loss == "huber":
            return (torch.sqrt((pred - target) ** 2 + cfg.huber_c**2) - cfg.huber_c).mean()
        return F.mse_loss(pred, target)

    @torch.no_grad()
    def validate(self, model, step: int, folder: Path) -> Path | None:
        """A grid of the validation prompts, sampled with LCM at CFG 1 and the LoRA as it is now."""
        if not self.cfg.validation_prompts:
            return None
        return validation_grid(self.model, self.cfg.validation_prompts, self.cfg.validation_seed,
                               self.cfg.validation_steps, folder / f"step-{step:06d}.png", model,
                               sampler=self.cfg.validation_sampler, cfg_scale=self.cfg.validation_cfg)

    def finish(self, model, out_dir: Path) -> Path:
        return save_lora(self, out_dir, lcm_metadata(self.cfg))


def lcm_metadata(cfg: LcmLoraTrainConfig) -> dict[str, str]:
    return {
        "ss_training_comment": "LCM-LoRA distilled with gouache train lcm-lora: sample with the LCM sampler, "
                               "2-8 steps, CFG 1",
        "gouache_lcm": json.dumps({"w_min": cfg.w_min, "w_max": cfg.w_max, "num_ddim_timesteps": cfg.num_ddim_timesteps,
                                   "loss": cfg.loss, "huber_c": cfg.huber_c, "timestep_scaling": TIMESTEP_SCALING,
                                   "sigma_data": SIGMA_DATA}),
    }


def train_lcm_lora(cfg: LcmLoraTrainConfig, log=print) -> Path:
    """Distil (or resume distilling) an LCM-LoRA; returns the path of the file written."""
    return run(cfg, LcmLoraObjective, log)
