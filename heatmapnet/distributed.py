"""PyTorch DDP plumbing for ``torchrun``: gloo on CPU, NCCL on CUDA, rank 0 writes."""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import List

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = torch_dist.get_rank() if world_size > 1 else 0
    return DistInfo(rank, world_size, local_rank, device)


def cleanup_distributed(dist: DistInfo) -> None:
    """Leave the process group; objects that still hold it (a dropped DDP wrapper in a reference
    cycle) are collected first, so the group goes now and not during the interpreter's shutdown."""
    if dist.enabled and torch_dist.is_initialized():
        gc.collect()
        torch_dist.destroy_process_group()


def gather_objects(obj, dist: DistInfo) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.enabled:
        return [obj]
    gathered = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, obj)
    return gathered


def values_over_ranks(value: torch.Tensor, dist: DistInfo) -> List[float]:
    """Every rank's scalar ``value``, in rank order, on every rank, by one all-reduce: each rank
    fills only its own slot of a zero vector, and x + 0 is exactly x (NaN and inf included), so
    the sum holds each rank's value as it was. Every rank must call it at the same point."""
    if not dist.enabled:
        return [float(value)]
    slots = torch.zeros(dist.world_size, dtype=torch.float64, device=value.device)
    slots[dist.rank] = value.detach().to(torch.float64)
    torch_dist.all_reduce(slots, op=torch_dist.ReduceOp.SUM)
    return slots.tolist()


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        torch_dist.barrier()
