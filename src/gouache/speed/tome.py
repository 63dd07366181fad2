"""Token merging for Stable Diffusion (ToMe, Bolya & Hoffman 2023), applied to self-attention.

Before a full-resolution transformer block's self-attention, the image's tokens are split into
destinations (one per ``sx × sy`` cell of the latent grid) and sources (the rest); the ``r`` sources
most similar (cosine) to some destination are averaged into it, attention runs on the remaining
tokens, and afterwards every merged source takes its destination's output again. With ratio 0.5
a 64×64 latent's 4,096 tokens become 2,048, and the attention costs a quarter.

Which token of each cell is the destination is drawn from a generator seeded per call, so an image
is the same every time it is made from its seed (the paper draws it at random each call).
The uncond and cond halves of a CFG batch get the same cells, as in the reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gouache.errors import check_number
from gouache.sampling.loop import to_device

MAX_RATIO = 0.75  # with 2x2 cells at most three tokens of four can go


@dataclass
class TokenMerging:
    """What to merge: ``ratio`` of the tokens, in blocks whose token grid is ``latent_hw`` (the
    UNet's input size, set by a forward pre-hook) downsampled at most ``max_downsample`` times."""

    ratio: float = 0.5
    max_downsample: int = 1
    sx: int = 2
    sy: int = 2
    seed: int = 0
    latent_hw: tuple[int, int] | None = None

    def __post_init__(self):
        check_number("tome_ratio", self.ratio, 0, MAX_RATIO)
        self._grids: dict = {}  # (h, w, device) -> the token grid's indices, drawn once (no copy to the GPU per call)

    def grid(self, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (h, w, str(device))
        if key not in self._grids:
            dst, src = token_grid(h, w, self.sx, self.sy, torch.Generator().manual_seed(self.seed))
            self._grids[key] = (to_device(dst, device), to_device(src, device))
        return self._grids[key]

    def plan(self, x: torch.Tensor) -> tuple[Callable, Callable] | None:
        """``(merge, unmerge)`` for tokens ``x`` (B, N, C), or ``None`` when this block is left alone."""
        if self.latent_hw is None or self.ratio <= 0:
            return None
        h0, w0 = self.latent_hw
        n = x.shape[1]
        down = 1
        while (h0 // down) * (w0 // down) > n and down <= 64:
            down *= 2
        h, w = -(-h0 // down), -(-w0 // down)
        if down > self.max_downsample or h * w != n:
            return None
        r = int(n * self.ratio)
        if r <= 0:
            return None
        return bipartite_merge(x, h, w, self.sx, self.sy, r, torch.Generator().manual_seed(self.seed),
                               grid=self.grid(h, w, x.device))


def token_grid(h: int, w: int, sx: int, sy: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The destinations' and the sources' token indices: one destination per full ``sx × sy`` cell,
    at a position drawn for the cell; tokens outside full cells are sources."""
    hc, wc = h // sy, w // sx
    pick = torch.randint(sy * sx, (hc, wc), generator=generator)
    is_dst = torch.zeros(hc, wc, sy * sx, dtype=torch.bool)
    is_dst.scatter_(2, pick[..., None], True)
    grid = torch.zeros(h, w, dtype=torch.bool)
    grid[: hc * sy, : wc * sx] = is_dst.view(hc, wc, sy, sx).transpose(1, 2).reshape(hc * sy, wc * sx)
    flat = grid.flatten()
    return flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1)


def bipartite_merge(x: torch.Tensor, h: int, w: int, sx: int, sy: int, r: int,
                    generator: torch.Generator, grid: tuple | None = None) -> tuple[Callable, Callable]:
    """Merge ``r`` of the ``h·w`` tokens of ``x`` (B, N, C) into one destination per ``sx × sy`` cell.

    >>> x = torch.randn(2, 16, 8)
    >>> merge, unmerge = bipartite_merge(x, 4, 4, 2, 2, 6, torch.Generator().manual_seed(0))
    >>> merge(x).shape, unmerge(merge(x)).shape
    (torch.Size([2, 10, 8]), torch.Size([2, 16, 8]))
    """
    b, n, _ = x.shape
    with torch.no_grad():
        if grid is None:
            grid = tuple(t.to(x.device) for t in token_grid(h, w, sx, sy, generator))
        dst_idx, src_idx = grid
        r = min(r, src_idx.numel())

        metric = x / x.norm(dim=-1, keepdim=True)
        scores = metric[:, src_idx] @ metric[:, dst_idx].transpose(1, 2)  # (B, S, D)
        best, best_dst = scores.max(dim=-1)  # each source's most similar destination
        order = best.argsort(dim=-1, descending=True)
        merged, kept = order[:, :r], order[:, r:]  # sources to merge, sources to keep (positions in src_idx)
        into = best_dst.gather(1, merged)  # the destination each merged source goes into
    n_dst = dst_idx.numel()

    def merge(t: torch.Tensor) -> torch.Tensor:
        c = t.shape[-1]
        src, dst = t[:, src_idx], t[:, dst_idx]
        keep = src.gather(1, kept[..., None].expand(-1, -1, c))
        gone = src.gather(1, merged[..., None].expand(-1, -1, c))
        dst = dst.scatter_reduce(1, into[..., None].expand(-1, -1, c), gone, reduce="mean")
        return torch.cat([keep, dst], dim=1)

    def unmerge(t: torch.Tensor) -> torch.Tensor:
        c = t.shape[-1]
        keep, dst = t[:, : t.shape[1] - n_dst], t[:, t.shape[1] - n_dst:]
        out = t.new_empty(t.shape[0], n, c)
        out[:, dst_idx] = dst
        src = t.new_empty(t.shape[0], src_idx.numel(), c)
        src.scatter_(1, kept[..., None].expand(-1, -1, c), keep)
        src.scatter_(1, merged[..., None].expand(-1, -1, c), dst.gather(1, into[..., None].expand(-1, -1, c)))
        out[:, src_idx] = src
        return out

    return merge, unmerge
