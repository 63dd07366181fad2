"""A training run across processes (``accelerate launch --num_processes N``): who draws which examples.

The loop (:mod:`gouache.train.loop`) numbers its micro-batches globally: micro-batch ``g`` of
optimizer step ``s`` is ``s · grad_accum + k``, whatever the number of processes. An objective whose
``loss`` is marked :func:`sharded` is called with ``g`` on every process and computes only its
:class:`Shard` of that micro-batch: with ``N`` processes and ``--batch-size B`` (per process, as
accelerate and kohya count it) the global micro-batch has ``N · B`` examples and process ``r`` takes
rows ``r·B … r·B + B - 1``. So the union of what the processes see at a step is exactly the batch one
process with ``--batch-size N·B`` sees, and DDP's mean of the per-process gradients is that batch's
gradient.

Random numbers follow the same rule. The run's random state is the same on every process (accelerate's
``set_seed`` seeds them alike, a resume gives every process the main process's state:
:func:`adopt_main_random_states`), and every process draws the numbers of the *whole* global batch
(the noise, the timesteps, the VAE's latent sample, the caption dropout) and keeps its rows. With one
process that is the draw the loop has always made, so single-process runs are unchanged; with ``N``
the examples get the very numbers they get in one process. Drawing ``N`` times the noise costs
nothing next to the UNet.

An objective whose loss is not marked (the base model's stages, LCM, IP-Adapter, CLIP …) is called
as before with its own per-process index ``g · N + r``: more data per step, not the same data.

Launching: accelerate only runs several CPU processes through ``torchrun`` (``accelerate launch
--multi_gpu``) or ``mpirun``; ``accelerate launch --cpu --num_processes N`` without an MPI host file
starts one process. :func:`check_launch` says so instead of training alone, and :func:`use_cpu`
makes processes started on a machine without a GPU join one gloo group instead of training as ``N``
independent runs that overwrite each other's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from gouache.errors import InvalidArgument

__all__ = ["Shard", "WHOLE", "adopt_main_random_states", "check_launch", "launched_processes", "sharded", "use_cpu"]


@dataclass(frozen=True)
class Shard:
    """Process ``rank``'s rows of each global micro-batch, of ``world`` processes.

    >>> Shard(1, 2).rows(3)
    slice(3, 6, None)
    """

    rank: int = 0
    world: int = 1

    def rows(self, n: int) -> slice:
        """This process's rows of a global batch of ``world · n``; ``n``: the per-process batch."""
        return slice(self.rank * n, (self.rank + 1) * n)

    def randn(self, shape, **kwargs) -> torch.Tensor:
        """``torch.randn(shape)`` for this process's rows: the global batch's draw (``world · shape[0]``
        rows, from the global random state), this process's part of it."""
        n = shape[0]
        full = torch.randn((n * self.world, *shape[1:]), **kwargs)
        return full if self.world == 1 else full[self.rows(n)]

    def randn_like(self, rows: torch.Tensor) -> torch.Tensor:
        """``torch.randn_like(rows)`` for this process's rows, drawn as :meth:`randn` draws. randn_like
        fills a tensor in its memory order (a VAE's latents are channels-last), so the global batch is
        laid out as ``rows`` is; its rows must be outermost in memory, as in NCHW and NHWC."""
        if self.world == 1:
            return torch.randn_like(rows)
        order = sorted(range(rows.dim()), key=lambda d: -rows.stride(d))  # outermost first
        assert order[0] == 0, f"rows are not outermost in memory (strides {rows.stride()})"
        full = rows.new_empty([rows.shape[d] * (self.world if d == 0 else 1) for d in order])
        return full.permute(*[order.index(d) for d in range(rows.dim())]).normal_()[self.rows(rows.shape[0])]

    def randint(self, high: int, n: int, **kwargs) -> torch.Tensor:
        """``torch.randint(0, high, (n,))`` for this process's rows, drawn as :meth:`randn` draws."""
        full = torch.randint(0, high, (n * self.world,), **kwargs)
        return full if self.world == 1 else full[self.rows(n)]


WHOLE = Shard()  # one process: the whole batch


def sharded(loss):
    """Mark an objective's ``loss(model, index)`` as one that takes the global micro-batch ``index``
    and computes only ``self.shard``'s rows of it (see the module doc). A subclass that overrides
    ``loss`` without the mark is called the per-process way."""
    loss.sharded = True
    return loss


def takes_shards(objective) -> bool:
    return bool(getattr(objective.loss, "sharded", False))


def launched_processes() -> int:
    """How many processes the launcher started (torchrun's ``WORLD_SIZE``, or MPI's)."""
    from accelerate.utils import get_int_from_env

    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)


def check_launch() -> None:
    """Raise :class:`InvalidArgument` when ``accelerate launch --cpu --num_processes N`` started one
    process (its simple launcher does that without ``--mpirun_hostfile``): it sets the rendezvous
    address for several processes but starts one, which would train alone thinking it is ``N``."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_CPU") and "MASTER_ADDR" in os.environ and launched_processes() == 1:
        raise InvalidArgument("`accelerate launch --cpu --num_processes N` starts one process unless MPI is set up "
                              "(--mpirun_hostfile); for N processes on the CPU use `accelerate launch --multi_gpu "
                              "--num_processes N` on a machine without a GPU, or set ACCELERATE_USE_CPU=1 in front of it")


def use_cpu() -> bool:
    """accelerate's ``cpu`` flag for this run: asked for (``ACCELERATE_USE_CPU``, as ``--cpu`` sets
    it), or several processes and no GPU to spread them over. accelerate itself would then run each
    process alone (its multi-CPU mode needs ``cpu=True``); here they join one gloo group."""
    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_CPU"):
        return True
    return launched_processes() > 1 and not _distributed_device()


def _distributed_device() -> bool:
    try:
        from accelerate.utils.imports import get_distributed_backend, get_torch_accelerator_backend
    except ImportError:  # an accelerate before these helpers: CUDA is the device it distributes over
        return torch.cuda.is_available()
    return get_distributed_backend(get_torch_accelerator_backend()[0]) is not None


def process_state():
    """accelerate's state of this process (rank, count, whether it is the main one), set up as the
    loop's ``Accelerator`` will be: the files a run writes before training are written by the main
    process alone."""
    from accelerate import PartialState

    check_launch()
    return PartialState(cpu=use_cpu())


def adopt_main_random_states(accelerator, folder: Path) -> None:
    """After ``accelerator.load_state(folder)``: every process continues from the main process's
    random states (``random_states_0.pkl``), so the processes draw alike (see the module doc) whether
    the checkpoint was written by one process or by several, and whatever number resumes it. The GPU
    state taken is that of the main process's device (its first)."""
    import random

    import numpy as np
    from accelerate.utils import load

    if accelerator.process_index == 0:
        return  # accelerate loaded its own file
    states = load(Path(folder) / "random_states_0.pkl")
    random.setstate(states["random_state"])
    np.random.set_state(states["numpy_random_seed"])
    torch.set_rng_state(states["torch_manual_seed"])
    device = accelerator.device
    if device.type == "cuda" and states.get("torch_cuda_manual_seed"):
        torch.cuda.set_rng_state(states["torch_cuda_manual_seed"][0], device=device)
