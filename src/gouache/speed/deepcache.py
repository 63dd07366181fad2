"""Reuse of the UNet's deep features across steps (DeepCache, Ma et al. 2024), "uniform" strategy.

Neighbouring denoising steps change the UNet's deep, low-resolution features very little. Every
``interval``-th step runs the whole UNet and keeps what its second-to-last up block hands to the
last one; the steps in between run only the shallow branch: ``conv_in``, the first down block, and
the last up block, which reads the kept deep features together with this step's fresh skip
connections. For SD 1.5 at 512² the shallow branch is about a third of a step's work.

The kept features are per image (``slot``), since gouache's guided denoiser runs the images of a
batch one at a time (:class:`gouache.sampling.guidance.PerImage`). ControlNet residuals of the shallow skip connections are still added on the
cached steps; the ControlNet's deep residuals wait for the next full step.
"""

from __future__ import annotations

import torch

from gouache.errors import check_int

MAX_INTERVAL = 20


class DeepCache:
    def __init__(self, interval: int):
        self.interval = check_int("deepcache_interval", interval, 1, MAX_INTERVAL)
        self.deep: dict[int, torch.Tensor] = {}
        self.full_calls = self.cached_calls = 0

    def is_full(self, step: int, slot: int) -> bool:
        return step % self.interval == 0 or slot not in self.deep

    def model_call(self, unet, residuals=None):
        """The guided denoiser's model call (:func:`gouache.sampling.guidance.unet_call`) through this cache."""

        def call(x, t, c, step: int = 0, slot: int = 0):
            extra = residuals(x, t, step, c) if residuals is not None else {}
            return self(unet, x, t, c.hidden, step, slot, added_cond_kwargs=c.added_kwargs(), **extra)

        return call

    def __call__(self, unet, x, t, encoder_hidden_states, step: int, slot: int = 0, added_cond_kwargs=None,
                 **extra) -> torch.Tensor:
        """The noise prediction for ``x``, as ``unet(x, t, ...)[0]`` would give it on a full step."""
        if self.is_full(step, slot):
            self.full_calls += 1
            kept = []
            hook = unet.up_blocks[-2].register_forward_hook(lambda mod, args, out: kept.append(out))
            try:
                out = unet(x, t, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs,
                           return_dict=False, **extra)[0]
            finally:
                hook.remove()
            self.deep[slot] = kept[-1]
            return out
        self.cached_calls += 1
        deep = self.deep[slot]
        if deep.shape[0] != x.shape[0]:  # CFG truncation dropped the uncond rows, which come first
            deep = deep[deep.shape[0] - x.shape[0]:]
        return shallow_forward(unet, x, t, encoder_hidden_states, deep, added_cond_kwargs,
                               extra.get("down_block_additional_residuals"))


def shallow_forward(unet, sample, timestep, encoder_hidden_states, deep, added_cond_kwargs=None,
                    down_residuals=None) -> torch.Tensor:
    """``conv_in`` → first down block → last up block (given the deep features) → output: the
    parts of ``UNet2DConditionModel.forward`` that run at full resolution."""
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
    emb = emb + aug if aug is not None else emb
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    encoder_hidden_states = unet.process_encoder_hidden_states(encoder_hidden_states=encoder_hidden_states,
                                                               added_cond_kwargs=added_cond_kwargs)
    sample = unet.conv_in(sample)
    first = unet.down_blocks[0]
    if getattr(first, "has_cross_attention", False):
        _, res = first(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states)
    else:
        _, res = first(hidden_states=sample, temb=emb)
    last = unet.up_blocks[-1]
    skips = ((sample,) + tuple(res))[: len(last.resnets)]
    if down_residuals is not None:
        skips = tuple(s + r for s, r in zip(skips, down_residuals))
    if getattr(last, "has_cross_attention", False):
        sample = last(hidden_states=deep, temb=emb, res_hidden_states_tuple=skips,
                      encoder_hidden_states=encoder_hidden_states)
    else:
        sample = last(hidden_states=deep, temb=emb, res_hidden_states_tuple=skips)
    if unet.conv_norm_out:
        sample = unet.conv_act(unet.conv_norm_out(sample))
    return unet.conv_out(sample)
