"""Multi-process training helpers around ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc_per_node N -m mhe.lab.cli train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address in the environment; :func:`init_distributed` reads them and joins the process group
with NCCL on CUDA and Gloo on CPU. Without those variables everything degrades to a single process, so
the same trainer code runs everywhere. Only rank 0 logs and writes checkpoints.

Start-up fails fast: a missing or malformed variable is a :class:`~mhe.errors.DistributedSetupError` (one
line from ``mhe``); while the processes wait for each other, a note says what they wait for after
:data:`NOTICE_AFTER_S` seconds, Ctrl-C stops the wait, and after ``$MHE_DIST_TIMEOUT`` seconds (default
:data:`DEFAULT_TIMEOUT_S`) it gives up with a message.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mhe.errors import DistributedSetupError
from mhe.utils import default_device

DEFAULT_TIMEOUT_S = 300.0  # how long the processes wait for each other at start-up ($MHE_DIST_TIMEOUT)
NOTICE_AFTER_S = 10.0  # after this long, say what is awaited


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


LAUNCH_HINT = "launch with `torchrun --nproc_per_node N -m mhe.lab.cli train ...`, which sets them all"


def _env_int(name: str, default: int | None = None, minimum: int = 0) -> int:
    """An integer environment variable of the rendezvous, checked (a DistributedSetupError names it)."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        if default is not None:
            return default
        raise DistributedSetupError(f"{name} is not set; {LAUNCH_HINT}")
    try:
        value = int(text.strip())
    except ValueError:
        raise DistributedSetupError(f"{name}={text!r} is not an integer; {LAUNCH_HINT}") from None
    if value < minimum:
        raise DistributedSetupError(f"{name}={value} must be at least {minimum}; {LAUNCH_HINT}")
    return value


def launched_distributed() -> bool:
    """True when the environment says this process is one of several (``torchrun`` sets ``WORLD_SIZE``);
    a malformed ``WORLD_SIZE`` is a :class:`~mhe.errors.DistributedSetupError`."""
    return _env_int("WORLD_SIZE", default=1, minimum=1) > 1


def _rendezvous_env() -> tuple[int, int, str, int]:
    """``(rank, world_size, master_addr, master_port)`` from the environment, every value checked."""
    world = _env_int("WORLD_SIZE", default=1, minimum=1)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if not os.environ.get(k, "").strip()]
    if missing:
        raise DistributedSetupError(
            f"WORLD_SIZE={world} (several processes) but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"not set; {LAUNCH_HINT} (or set MASTER_ADDR, MASTER_PORT and RANK for each process)")
    rank = _env_int("RANK")
    if rank >= world:
        raise DistributedSetupError(f"RANK={rank} but WORLD_SIZE={world}: ranks are 0 to {world - 1}")
    port = _env_int("MASTER_PORT", minimum=1)
    if port > 65535:
        raise DistributedSetupError(f"MASTER_PORT={port} is not a port number (1 to 65535)")
    addr = os.environ["MASTER_ADDR"].strip()
    import socket

    try:
        socket.getaddrinfo(addr, port)
    except (socket.gaierror, UnicodeError) as e:
        raise DistributedSetupError(f"MASTER_ADDR={addr!r} cannot be resolved ({e}); give the rank-0 machine's "
                                    "host name or IP address (127.0.0.1 on one machine)") from None
    return rank, world, addr, port


def _timeout_s() -> float:
    text = os.environ.get("MHE_DIST_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise DistributedSetupError(f"MHE_DIST_TIMEOUT={text!r} is not a number of seconds") from None
    if not value > 0:
        raise DistributedSetupError(f"MHE_DIST_TIMEOUT={text} must be a positive number of seconds")
    return value


def _join_process_group(backend: str, rank: int, world: int, addr: str, port: int) -> None:
    """``dist.init_process_group`` with a deadline, a note on what it waits for, and Ctrl-C honoured.

    torch blocks inside C++ while the processes meet, where Python cannot act on Ctrl-C; the call runs in
    a helper thread and this one waits for it in short slices (a KeyboardInterrupt then ends the wait;
    the helper thread is a daemon and dies with the process)."""
    outcome: dict[str, BaseException | None] = {}

    def join() -> None:
        try:
            dist.init_process_group(backend=backend)
            outcome["error"] = None
        except BaseException as e:  # handed to the waiting thread
            outcome["error"] = e

    timeout = _timeout_s()
    what = (f"the {world} processes (WORLD_SIZE={world}) to meet at {addr}:{port} (MASTER_ADDR:MASTER_PORT); "
            f"this is RANK={rank}")
    worker = threading.Thread(target=join, name="mhe-rendezvous", daemon=True)
    start = time.monotonic()
    worker.start()
    noted = False
    while worker.is_alive():
        worker.join(0.1)
        waited = time.monotonic() - start
        if not noted and waited >= NOTICE_AFTER_S and worker.is_alive():
            print(f"[mhe] waiting for {what}; Ctrl-C stops, the wait ends after {timeout:g} s "
                  "($MHE_DIST_TIMEOUT)", file=sys.stderr, flush=True)
            noted = True
        if waited >= timeout and worker.is_alive():
            raise DistributedSetupError(
                f"gave up after {timeout:g} s waiting for {what}: start every rank (torchrun starts them "
                "together), check MASTER_ADDR and MASTER_PORT, or wait longer with MHE_DIST_TIMEOUT=<seconds>")
    error = outcome.get("error")
    if error is not None:
        if isinstance(error, KeyboardInterrupt):
            raise error
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise DistributedSetupError(
            f"cannot join the process group at {addr}:{port} as RANK={rank} of WORLD_SIZE={world} "
            f"({type(error).__name__}: {first}); check MASTER_ADDR and MASTER_PORT (a free port on the "
            "rank-0 machine)") from None


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (else a single-process :class:`DistInfo`).

    ``device``: "cpu", "cuda" or None (CUDA when present). Under torchrun on CUDA each process takes GPU
    ``LOCAL_RANK``. An already-initialised group (e.g. from a test) is reused.
    """
    base = default_device(device)
    if not launched_distributed() and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(device=base)
    if not dist.is_available():
        raise DistributedSetupError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    local_rank = _env_int("LOCAL_RANK", default=0)
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedSetupError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                "use --nproc_per_node <= the number of GPUs"
            )
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    if not dist.is_initialized():
        rank, world, addr, port = _rendezvous_env()
        _join_process_group("nccl" if base.type == "cuda" else "gloo", rank, world, addr, port)
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
    return dict(zip(keys, t.tolist(), strict=True))


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
