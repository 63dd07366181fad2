"""The prompt read out for the motion modules: gouache's extension of AnimateDiff's motion adapter.

AnimateDiff's motion modules attend across the frames at each position and never see the prompt:
they learn the motion the frozen image model's features imply. When what a clip does is said only by
its words ("…, moving left" against "…, moving right"), that is not enough — gouache-tiny's UNet
passes on too little of one word among 77 (docs/motion-training.md, "Where the words are needed, and
an oracle"). A :class:`TextReadout` hands the prompt to the modules themselves: each token's text
state through a small MLP, read out by an attention pooling with learnt queries (four heads, each
can pick one word out by what it says, wherever it stands) into a small layer-normed code, and one
linear map per module (zero at the start: the adapter as it was) whose output is
added to what the module's attention reads. Optionally (``sideways``) that input also holds four
eighths of its channels shifted by one position left, right, up and down, so that a module can tell
which way something moves, not only that it changes.

It is shipped beside the adapter's weights (:data:`gouache.adapters.motion.MOTION_TEXT` in the ``MotionAdapter`` folder), as
the cross-attention LoRA is; an adapter without one runs exactly as AnimateDiff's. Its settings are in
the file's header, so a file is all it takes to rebuild it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gouache.errors import ModelLoadError

HIDDEN = 128  # the per-token MLP's width
HEADS, KEY = 4, 32  # the attention read-out's heads and key width
CODE = 16  # the width of what is passed on (layer-normed): small and bounded, whatever the prompt says


def sideways(h: torch.Tensor) -> torch.Tensor:
    """``h`` (N, C, H, W) with four eighths of its channels moved by one position right, left, down and
    up (zeros come in); the rest as they are. No weights."""
    c, out = h.shape[1] // 8, h.clone()
    out[:, : 4 * c] = 0
    out[:, 0:c, :, 1:] = h[:, 0:c, :, :-1]
    out[:, c:2 * c, :, :-1] = h[:, c:2 * c, :, 1:]
    out[:, 2 * c:3 * c, 1:] = h[:, 2 * c:3 * c, :-1]
    out[:, 3 * c:4 * c, :-1] = h[:, 3 * c:4 * c, 1:]
    return out


class TextReadout(torch.nn.Module):
    """The prompt's text states (N, 77, width) as one vector per row, and per motion module the
    shift of that module's input it makes (see the module docstring). ``dims``: each module's
    channels, in :func:`gouache.adapters.motion.pairs` order."""

    def __init__(self, width: int, dims: list[int], sideways: bool = True, hidden: int = HIDDEN):
        super().__init__()
        self.width, self.dims, self.sideways, self.hidden = width, list(dims), bool(sideways), hidden
        self.token = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden))
        self.key = torch.nn.Linear(width, HEADS * KEY)
        self.query = torch.nn.Parameter(torch.randn(HEADS, KEY))
        self.code = torch.nn.Sequential(torch.nn.Linear(hidden * HEADS, CODE), torch.nn.LayerNorm(CODE, elementwise_affine=False))
        self.out = torch.nn.ModuleList(torch.nn.Linear(CODE, c) for c in dims)
        for lin in self.out:
            torch.nn.init.zeros_(lin.weight)
            torch.nn.init.zeros_(lin.bias)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """(N, L, width) -> (N, CODE): each head's learnt query picks the tokens it reads by their content
        (wherever they stand) and takes their MLP-mapped states; a linear map of the heads' reading,
        layer-normed, is the code every module's map reads."""
        text = text.to(self.out[0].weight.dtype)
        keys = self.key(text).unflatten(-1, (HEADS, KEY))  # (N, L, heads, KEY)
        weights = torch.einsum("nlhd,hd->nhl", keys, self.query).div(KEY ** 0.5).softmax(-1)
        return self.code(torch.einsum("nhl,nlc->nhc", weights, self.token(text)).flatten(1))

    def reader(self) -> list[torch.nn.Parameter]:
        """The parameters that read the text (not the per-module maps): they train at their own rate."""
        return [p for n, p in self.named_parameters() if not n.startswith("out.")]

    def steer(self, h: torch.Tensor, index: int, read: torch.Tensor | None) -> torch.Tensor:
        """What module ``index`` attends over instead of ``h`` (N, C, H, W): shifted sideways, plus the
        text's vector for each row (``read``: one row per row of ``h``, or per clip and repeated)."""
        x = sideways(h) if self.sideways else h
        if read is not None:
            v = self.out[index](read).to(h.dtype)
            if v.shape[0] != h.shape[0]:
                v = v.repeat_interleave(h.shape[0] // v.shape[0], 0)
            x = x + v[:, :, None, None]
        return x

    # -- the file ---------------------------------------------------------------------------------------

    def header(self) -> dict[str, str]:
        return {"format": "gouache-motion-text", "width": str(self.width), "hidden": str(self.hidden),
                "dims": ",".join(map(str, self.dims)), "sideways": "1" if self.sideways else "0"}

    def save_bytes(self, dtype: torch.dtype = torch.float16) -> bytes:
        from safetensors.torch import save

        return save({k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}, metadata=self.header())

    @classmethod
    def load(cls, path: Path) -> "TextReadout":
        """A readout from its file; one :class:`ModelLoadError` for a file that is not one."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if meta.get("format") != "gouache-motion-text":
                raise ValueError("no gouache-motion-text header")
            readout = cls(int(meta["width"]), [int(d) for d in meta["dims"].split(",")], meta.get("sideways") == "1",
                          int(meta["hidden"]))
            readout.load_state_dict({k: v.float() for k, v in tensors.items()})
        except Exception as e:  # safetensors, header and shape errors have no common base
            raise ModelLoadError(f"{path} is not a motion adapter's text readout: {str(e).splitlines()[0][:200]}") from None
        return readout.eval().requires_grad_(False)


class Steering:
    """A readout at work on one UNet: :meth:`read` (called with each UNet call's text states) keeps
    the vectors that :meth:`steer` adds."""

    def __init__(self, readout: TextReadout):
        self.readout, self.read_now = readout, None

    def read(self, text: torch.Tensor | None) -> None:
        self.read_now = None if text is None else self.readout(text)

    def steer(self, h: torch.Tensor, index: int) -> torch.Tensor:
        return self.readout.steer(h, index, self.read_now)


def text_of_call(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """A UNet call's ``encoder_hidden_states`` (its third argument or the keyword)."""
    text = kwargs.get("encoder_hidden_states")
    if text is None and len(args) > 2:
        text = args[2]
    return text if isinstance(text, torch.Tensor) else None
