"""Multi-process training helpers around ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc_per_node N -m mhe.cli train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address in the environment; :func:`init_distributed` reads them and joins the process group
with NCCL on CUDA and Gloo on CPU. Without those variables everything degrades to a single process, so
the same trainer code runs everywhere. Only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mhe.utils import default_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global ``rank`` among ``world_size`` processes and its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def launched_distributed() -> bool:
    """True when the environment says this process is one of several (``torchrun`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (else a single-process :class:`DistInfo`).

    ``device``: "cpu", "cuda" or None (CUDA when present). Under torchrun on CUDA each process takes GPU
    ``LOCAL_RANK``. An already-initialised group (e.g. from a test) is reused.
    """
    base = default_device(device)
    if not launched_distributed() and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(device=base)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                "use --nproc_per_node <= the number of GPUs"
            )
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
        if missing:
            raise RuntimeError(
                f"WORLD_SIZE > 1 but {', '.join(missing)} not set; launch with "
                "`torchrun --nproc_per_node N -m mhe.cli train ...`"
            )
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=base
    )


def cleanup_distributed() -> None:
    """Leave the process group if one is active (all ranks call it together at the end)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        # DDP modules left in reference cycles still hold the group; collect them first, or gloo's
        # threads are torn down at interpreter exit and the process aborts
        gc.collect()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar ``values`` over processes (every process must pass the same keys)."""
    if not info.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Collect one picklable object from every process, in rank order (``[obj]`` in a single process)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
