"""The denoising loss every diffusion trainer uses (base model, LoRA, textual inversion, ControlNet,
motion adapter: its latents are clips, (B, C, F, H, W), one timestep per clip as AnimateDiff trains).

Noise is added to the latents at a random timestep and the UNet predicts what the scheduler's
``prediction_type`` says: the noise (``epsilon``, SD 1.x, gouache-tiny), the velocity
(``v_prediction``, SD 2.x 768-v) or the clean latents (``sample``). Options, as in the field's
training scripts:

* **min-SNR-γ** weighting (Hang et al., 2023): each timestep's loss is weighted by
  ``min(SNR, γ) / SNR`` (``/ (SNR + 1)`` for v targets, ``min(SNR, γ)`` itself for x0 targets),
  so the easy low-noise steps stop dominating.
* **x0 weighting** (``x0_weight_cap``): each timestep's loss is weighted so that it counts the
  error of the clean latents it implies (``1 / SNR`` for noise targets, ``1 / (SNR + 1)`` for v),
  capped: the high-noise steps, where an epsilon loss barely tells one layout from another, weigh
  as much as what they decide (a motion adapter's direction: see docs/motion-training.md).
* **prior start** (``prior_start``): a fraction of the items is trained from a noisy input drawn
  afresh at the last timesteps, with the noise it implies as the target: the model learns what to
  predict from an input that carries nothing of the image, as a sampler's first step gives it, where
  an ordinary last-timestep input still carries a trace of it (Lin et al., 2024, on schedules whose
  last step is not pure noise).
* **noise offset** (Guttenberg, 2023): a per-channel constant is added to the noise, so the model can
  learn images darker or brighter on average than its training data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gouache.models.latents import to_latents
from gouache.sampling.prediction import check_prediction_type
from gouache.train.processes import WHOLE, Shard


@dataclass
class DenoisingLoss:
    noise_scheduler: object  # a diffusers DDPMScheduler with the model's training schedule
    min_snr_gamma: float = 0.0  # 0: off
    noise_offset: float = 0.0  # 0: off
    timestep_bias: float = 0.0  # 0: timesteps uniform; b > 0: drawn with density ∝ t^b (towards high noise)
    x0_weight_cap: float = 0.0  # 0: off; else each item weighted as the clean latents' error, at most this
    prior_start: float = 0.0  # fraction of items whose noisy input at the last timesteps is a fresh draw (see noised)

    def __post_init__(self) -> None:
        ac = self.noise_scheduler.alphas_cumprod
        self.snr = ac / (1 - ac)
        self.prediction_type = check_prediction_type(self.noise_scheduler.config.prediction_type)

    def __call__(self, unet, latents: torch.Tensor, hidden: torch.Tensor, shard: Shard = WHOLE,
                 **unet_kwargs) -> torch.Tensor:
        """The loss of ``latents`` (``shard``'s rows of a global batch: see :mod:`gouache.train.processes`)."""
        noisy, t, target = self.noised(latents, shard)
        pred = unet(noisy, t.to(latents.device), hidden, **unet_kwargs).sample
        return self.weighted(pred, target, t)

    def noised(self, latents: torch.Tensor, shard: Shard = WHOLE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noisy latents, timesteps, target)``: the first half of :meth:`__call__`, for a trainer
        that runs the model itself (a teacher's prediction as the target, hooks around the student)."""
        n = latents.shape[0]
        noise = shard.randn_like(latents)
        if self.noise_offset:
            # one constant per sample and channel (per clip and channel for (B, C, F, H, W) video latents)
            noise = noise + self.noise_offset * shard.randn((n, latents.shape[1], *[1] * (latents.ndim - 2)))
        total = self.noise_scheduler.config.num_train_timesteps
        t = shard.randint(total, n)
        if self.timestep_bias:
            # the same uniform draw, mapped through the inverse of the CDF (t/N)^(1+b)
            u = (t.double() + 0.5) / total
            t = (u ** (1.0 / (1.0 + self.timestep_bias)) * total).long().clamp_(0, total - 1)
        if self.prior_start:
            t, noise = self._prior_start(latents, noise, t, shard)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        if self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, t)
        else:
            target = latents if self.prediction_type == "sample" else noise
        return noisy, t, target

    def _prior_start(self, latents, noise, t, shard: Shard):
        """A ``prior_start`` fraction of the items moved to the last tenth of the timesteps (where
        samplers start: 941 for 20 steps of A1111's default spacing, 999 for Karras) with a noisy input
        drawn afresh, independent of their latents, and the noise that input implies as the target
        (``(x_t - sqrt(ᾱ_t)·x0) / sqrt(1 - ᾱ_t)``). There an ordinary noisy input still carries
        ``sqrt(ᾱ_t)`` of its latents (0.07–0.12 for SD's schedule), which across a clip's frames is
        enough to read the layout from; a sampler's first input carries none. These items teach the model what
        to predict then: the mean of what the caption allows (with ``x0_weight_cap``, weighted as that
        error), which is where the caption alone decides (a motion adapter's direction)."""
        n, total = latents.shape[0], self.noise_scheduler.config.num_train_timesteps
        pick = shard.randint(1 << 20, n) < round(self.prior_start * (1 << 20))
        if not bool(pick.any()):
            return t, noise
        top = total - total // PRIOR_START_SPAN + shard.randint(total // PRIOR_START_SPAN, n)
        t = torch.where(pick, top, t)
        ab = self.noise_scheduler.alphas_cumprod[t].to(latents.device, latents.dtype).view(-1, *[1] * (latents.ndim - 1))
        implied = (shard.randn_like(latents) - ab.sqrt() * latents) / (1 - ab).sqrt()
        rows = pick.to(latents.device).view(-1, *[1] * (latents.ndim - 1))
        return t, torch.where(rows, implied, noise)

    def weighted(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The mean squared error of ``pred``, weighted per item (min-SNR-γ when on)."""
        return self.per_item(pred, target, t).mean()

    def per_item(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Each item's weighted mean squared error (:meth:`weighted` before its mean)."""
        per_item = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=tuple(range(1, pred.ndim)))
        if self.min_snr_gamma:
            snr = self.snr[t]
            weight = torch.clamp(snr, max=self.min_snr_gamma)  # the weight of an x0 target
            if self.prediction_type != "sample":
                weight = weight / (snr + 1 if self.prediction_type == "v_prediction" else snr)
            per_item = per_item * weight.to(per_item.device)
        if self.x0_weight_cap:
            snr = self.snr[t]
            weight = {"epsilon": 1 / snr, "v_prediction": 1 / (snr + 1)}.get(self.prediction_type, torch.ones_like(snr))
            per_item = per_item * weight.clamp(max=self.x0_weight_cap).to(per_item.device)
        return per_item


PRIOR_START_SPAN = 10  # prior_start items: the last 1/10 of the timesteps


def training_noise_scheduler(scheduler_config: dict):
    """The DDPM training schedule of a model, from its (sampling) scheduler's config."""
    from diffusers import DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type", "trained_betas")
    return DDPMScheduler(**{k: scheduler_config[k] for k in keys if scheduler_config.get(k) is not None})


def drop_captions(captions: list[str], rate: float, index: int, shard: Shard = WHOLE) -> list[str]:
    """Replace a fraction ``rate`` of the captions by "" (for classifier-free guidance), the same
    ones for the same micro-batch ``index`` on every run; ``captions``: ``shard``'s rows of it."""
    if not rate:
        return list(captions)
    rng = random.Random(index)
    draws = [rng.random() for _ in range(len(captions) * shard.world)][shard.rows(len(captions))]
    return ["" if d < rate else c for c, d in zip(captions, draws)]


def sample_latents(dist, shard: Shard = WHOLE) -> torch.Tensor:
    """``dist.sample()`` of a VAE's latent distribution (diffusers' ``DiagonalGaussianDistribution``)
    with ``shard``'s rows of the global batch's noise."""
    noise = shard.randn(dist.mean.shape, device=dist.parameters.device, dtype=dist.parameters.dtype)
    return dist.mean + dist.std * noise


class FolderLatents:
    """The scaled latents of an image folder's batches (:class:`~gouache.data.folder.ImageFolderDataset`):
    each batch encoded as it is drawn, or with ``cache`` every (image, flip) encoded once and its
    latent distribution sampled again at each step (center crops only: a random crop changes)."""

    def __init__(self, vae, dataset, cache: bool = False):
        self.vae, self.dataset = vae, dataset
        self.cache = self._encode_all() if cache else None

    @torch.no_grad()
    def _encode_all(self) -> dict:
        cache = {}
        for i in range(len(self.dataset)):
            for flipped in (False, True) if self.dataset.flip else (False,):
                pixels = self.dataset.pixels(i, flipped)[None]
                cache[(i, flipped)] = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist
        return cache

    def batch(self, index: int, batch_size: int, shard: Shard = WHOLE) -> tuple[torch.Tensor, list[str]]:
        """Latents of batch ``index`` (the same images on every run) and its captions: ``shard``'s
        ``batch_size`` rows of the global batch of ``batch_size · shard.world``."""
        picks = self.dataset.pick(index, batch_size * shard.world)
        rows = shard.rows(batch_size)
        captions = [self.dataset.items[i][1] for i, *_ in picks[rows]]
        if self.cache is not None:  # every cached item samples its latent, in order: the global batch's draws
            raw = torch.cat([self.cache[(i, f)].sample() for i, f, _, _ in picks][rows])
            return to_latents(self.vae, raw), captions
        pixels = torch.stack([self.dataset.pixels(i, f, x, y) for i, f, x, y in picks[rows]])
        with torch.no_grad():
            raw = sample_latents(self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist, shard)
        return to_latents(self.vae, raw), captions


def encode_captions(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    """The text encoder's last hidden state of plain (unweighted, 77-token) captions."""
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]
