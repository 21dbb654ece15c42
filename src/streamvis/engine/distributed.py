"""Process-group set-up and small collectives for `torchrun` training (gloo on CPU, nccl on GPU).

`torchrun --nproc_per_node=N -m streamvis train ...` sets RANK, WORLD_SIZE and LOCAL_RANK (and
MASTER_ADDR/MASTER_PORT); `init_distributed` reads them. Without them everything runs in one
process and the collectives here are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# The other ranks wait in a barrier while rank 0 evaluates on the valid split, which can take far
# longer than torch's default 30-minute collective timeout on a CPU.
COLLECTIVE_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global rank, the number of processes and its local rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK set by torchrun (defaults: a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """"auto" -> CUDA when available; with CUDA each process takes GPU `local_rank`."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from streamvis.errors import ConfigError

            raise ConfigError("train.device is 'cuda' but no CUDA device is available (use train.device=cpu)")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Join the process group from the environment (env:// init); a no-op for one process."""
    if not info.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=info.rank,
        world_size=info.world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_dist():
        dist.barrier()


def reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average scalar tensors over all processes (one all_reduce); returns Python floats.

    Args:
        values: name -> 0-d tensor (detached), same names in the same order on every rank.

    Returns:
        name -> the mean over ranks (the local value with one process).
    """
    names = list(values)
    if not names:
        return {}
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in names])  # (K,)
    if is_dist():
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked / dist.get_world_size()
    return dict(zip(names, stacked.cpu().tolist()))


def all_gather_object(obj) -> list:
    """Gather a picklable object from every rank (a one-item list with one process)."""
    if not is_dist():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s object on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
