"""The layers that classifier-free guidance's halves share, run once per step instead of twice.

With CFG, the UNet gets the same latent and the same timestep twice, once per prompt (the
unconditional one and the prompt), and the two halves of the batch only part at the first
cross-attention, where the text comes in. In SD 1.x and 2.x everything before it is one
ResNet block at full resolution, the first transformer's norm and input projection, and its
self-attention at 4,096 tokens (at 512²): 41 of a step's 1,607 GFLOP, and, because attention at
that size runs below the convolutions' rate, about 2.7 % of its time (0.11 s). Inside
:func:`shared_cfg_prefix` those layers check whether every image of their batch has the same
input (``torch.equal``, about 1 ms at 64² latents) and then compute one and copy it; a clip's
batch, its unconditional frames then the same frames for the prompt, computes its frames once. The
computation per image is the same as in the batch, so nothing is approximated (only GroupNorm's
sums may come in another order with the batch size); the tests check the UNet's prediction against
the plain call.

Nothing is assumed about the caller: a batch whose images differ (SDXL, whose time embedding
carries each prompt's pooled text, or a caller batching different latents) is computed whole.
"""

from __future__ import annotations

import contextlib

import torch


def _period(x: torch.Tensor) -> int:
    """The smallest ``p`` such that batch ``x`` is copies of its first ``p`` images, one after
    another: 1 for an image's CFG halves, the frame count for a clip's (its unconditional frames,
    then the same frames for the prompt); ``x.shape[0]`` when nothing repeats."""
    n = x.shape[0]
    for p in range(1, n // 2 + 1):
        if n % p == 0 and all(torch.equal(x[:p], x[k:k + p]) for k in range(p, n, p)):
            return p
    return n


def _repeats(temb: torch.Tensor, p: int) -> bool:
    """Whether the time embedding ``temb`` is copies of its first ``p`` rows (``None``: nothing to
    compare). Equal timesteps can come out of the embedding's matmul a rounding apart in rows of an
    odd-sized batch, so rows within 1e-6 count as copies: a rounding of the embedding, not another
    timestep (SDXL's embedding, which carries each prompt's text, differs by far more)."""
    if temb is None:
        return True
    n = temb.shape[0]
    return n % p == 0 and all(torch.allclose(temb[:p], temb[k:k + p], rtol=1e-6, atol=1e-6) for k in range(p, n, p))


def _spread(y: torch.Tensor, n: int) -> torch.Tensor:
    """The first images' output as the batch of ``n`` (keeps channels-last)."""
    return torch.cat([y] * (n // y.shape[0]))


def _shared_period(x) -> int:
    """The period of batch ``x`` when its repeats are worth sharing (0: compute it whole)."""
    if not (isinstance(x, torch.Tensor) and x.dim() >= 2 and x.shape[0] > 1 and not torch.is_grad_enabled()):
        return 0
    p = _period(x)
    return p if p < x.shape[0] else 0


def _resnet_forward(mod):
    plain = type(mod).forward

    def forward(input_tensor, temb=None, *args, **kwargs):
        n = input_tensor.shape[0]
        p = 0 if args or kwargs or mod.training else _shared_period(input_tensor)
        if not p or (temb is not None and (temb.shape[0] != n or not _repeats(temb, p))):
            return plain(mod, input_tensor, temb, *args, **kwargs)
        return _spread(plain(mod, input_tensor[:p], None if temb is None else temb[:p]), n)

    return forward


def _transformer_input(mod):
    plain = type(mod)._operate_on_continuous_inputs

    def operate(hidden_states):
        p = 0 if mod.training else _shared_period(hidden_states)
        if not p:
            return plain(mod, hidden_states)
        tokens, inner_dim = plain(mod, hidden_states[:p])
        return _spread(tokens, hidden_states.shape[0]), inner_dim

    return operate


def _self_attention_forward(mod):
    plain = type(mod).forward

    def forward(hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        bare = encoder_hidden_states is None and attention_mask is None and not kwargs and not mod.training
        p = _shared_period(hidden_states) if bare else 0
        if not p:
            return plain(mod, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        return _spread(plain(mod, hidden_states[:p]), hidden_states.shape[0])

    return forward


def _per_image_processors() -> tuple:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from gouache.speed.attention import GouacheAttnProcessor

    return (GouacheAttnProcessor, AttnProcessor, AttnProcessor2_0)


def _patches(model) -> list[tuple[torch.nn.Module, dict]]:
    """The shared prefix of ``model`` (a UNet or ControlNet): its first block's first ResNet and
    its first transformer's input and self-attention, when the first block is SD's
    ``CrossAttnDownBlock2D`` (other layouts get nothing)."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    blocks = getattr(model, "down_blocks", None)
    if not blocks:
        return []
    first = blocks[0]
    resnets, attentions = getattr(first, "resnets", None), getattr(first, "attentions", None)
    if not resnets or not attentions or type(resnets[0]) is not ResnetBlock2D:
        return []
    out = [(resnets[0], {"forward": _resnet_forward(resnets[0])})]
    transformer = attentions[0]
    if type(transformer) is not Transformer2DModel or not getattr(transformer, "is_input_continuous", False):
        return out
    out.append((transformer, {"_operate_on_continuous_inputs": _transformer_input(transformer)}))
    block = transformer.transformer_blocks[0]
    attn1 = getattr(block, "attn1", None)
    # only processors known to treat each image alone (not, say, one that shares attention across a batch)
    if (type(attn1) is Attention and not attn1.is_cross_attention and not getattr(block, "only_cross_attention", True)
            and type(attn1.processor) in _per_image_processors()):
        out.append((attn1, {"forward": _self_attention_forward(attn1)}))
    return out


@contextlib.contextmanager
def shared_cfg_prefix(*models):
    """While inside, the layers before ``models``' first cross-attention compute one image of a
    batch whose images are all the same (CFG's halves), or one clip of a batch of the same clip, and
    copy it (exact; see the module's
    docstring). Compiled models and layers already shared by an enclosing scope are left alone."""
    from gouache.speed.packing import instance_patches, uncompiled

    targets = (target for model in uncompiled(models) for target in _patches(model))
    with instance_patches("_gouache_shared", targets) as n:
        yield n
