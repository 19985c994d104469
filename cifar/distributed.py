"""Training on several processes: torchrun starts them, DistributedDataParallel keeps them in step.

    torchrun --standalone --nproc-per-node 2 -m cifar.train --model cnn ...      # one machine
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        --rdzv-id cifar1 -m cifar.train ...                                         # every machine

`Distributed` is what the one training loop asks of the job: which part of a global batch is this
rank's (`shard`), the sums over ranks of what it logs (`sum`, `mean`), and whether this rank writes
files (`is_main`). In one process (`python -m cifar.train`) every one of these is the identity, so
a plain run does exactly what it did before DDP existed.

The semantics: `--batch-size` stays the global batch, the images of one optimiser step over all
ranks. Every rank draws the same seeded order and augmentation of the whole epoch (a few tensor ops)
and takes its contiguous slice of each global batch, so the ranks together see exactly the images
one process would, and DDP's gradient average over equal slices is the gradient of the global
batch's mean loss. What still differs from one process: BatchNorm, which normalises each rank's
slice by itself unless --sync-bn, and dropout masks, drawn per rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from cifar.runtime import Runtime


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job; the defaults are the one-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank on this machine: its GPU under NCCL
    backend: str = ""  # gloo (CPU) or nccl (CUDA); "" in one process

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs and writes the resume state, the checkpoint and the evaluation."""
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        """A global batch must split into equal slices, or DDP's average would weight images unequally."""
        if batch_size % self.world_size:
            raise ValueError(f"--batch-size {batch_size} (the global batch) does not split into {self.world_size} "
                             f"equal parts, one per rank; use a multiple of {self.world_size}")

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (a view; the whole batch in one process)."""
        if not self.enabled:
            return batch
        n = len(batch) // self.world_size
        return batch[self.rank * n : (self.rank + 1) * n]

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a tensor every rank holds (the tensor itself in one process)."""
        if not self.enabled:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over ranks: every rank gets the same number, so all decide alike (a NaN stops all)."""
        return self.sum(value) / self.world_size if self.enabled else value

    def wrap(self, model: nn.Module, rt: Runtime, sync_bn: bool = False) -> nn.Module:
        """The module the training step calls: DDP around the model under torchrun, else the model.

        The model itself stays unwrapped for state dicts, EMA and evaluation, so its keys and the
        checkpoint are the same as a one-process run's.
        """
        if not self.enabled:
            return model
        if sync_bn and rt.device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only (on CPU ranks, "
                             "each rank's BatchNorm normalises its own slice of the global batch)")
        if sync_bn:
            # In place (the model is not itself a BatchNorm): the modules are swapped, their
            # parameters and buffers, and so the optimiser's and the EMA's, stay the same tensors.
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def describe(self, batch_size: int) -> dict[str, object]:
        """For the checkpoint's metadata: how many processes trained, and the batch per step over all."""
        return {"world_size": self.world_size, "global_batch": batch_size,
                "per_rank_batch": batch_size // self.world_size, "backend": self.backend or None}


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started for a job of more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str) -> Distributed:
    """Join the torchrun job this process belongs to (NCCL on CUDA, gloo on the CPU), or return the
    one-process context when torchrun did not start it. `device` is --device; `auto` means CUDA if present."""
    if not launched_by_torchrun():
        return Distributed()
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device == "mps":
        raise ValueError("torchrun with --device mps is not supported (no collective backend runs on MPS); "
                         "use --device cpu (gloo) or cuda (nccl)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but CUDA is not available here; use --device cpu or auto")
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} has no GPU: this machine has {torch.cuda.device_count()}; "
                             f"start at most that many with --nproc-per-node")
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Distributed(rank=rank, world_size=world, local_rank=local, backend=backend)


def leave(ctx: Distributed) -> None:
    """End this process's part in the job (after every rank has arrived)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
