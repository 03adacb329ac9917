"""The trainer's data order: resumable, sharded epochs and the loaders built on them.

The order of epoch ``e`` is a function of ``(seed, e)`` alone (:class:`ResumableSampler`), so a run resumed at
batch ``b`` of epoch ``e`` sees exactly the items an uninterrupted run would have seen from there on, and
:func:`epoch_batches` chains the epochs into the one stream of batches :func:`mhe.training.fit` steps through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from mhe.config import TrainConfig
from mhe.evaluation import move_to_device


class ResumableSampler(Sampler[int]):
    """This rank's share of epoch ``epoch`` in ``DistributedSampler`` order, minus its first ``start`` items.

    The permutation depends only on ``(seed, epoch)``, so a resumed run sees exactly the items an
    uninterrupted run would have seen from that point on.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        start: int = 0,
    ) -> None:
        inner: DistributedSampler[int] = DistributedSampler(
            range(size),  # type: ignore[arg-type]  # any sized sequence serves: only its length is read
            num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False,
        )
        inner.set_epoch(epoch)
        self.indices = list(iter(inner))[start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class DeviceLoader:
    """Iterate ``loader`` with every batch moved to ``device`` (what ``evaluate_fn`` receives)."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self.loader = loader
        self.device = device
        self.dataset = loader.dataset
        self.batch_size = loader.batch_size

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield move_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


def train_loader(
    data: Dataset,
    train: TrainConfig,
    *,
    seed: int,
    epoch: int,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """The loader of epoch ``epoch`` from batch ``start_batch`` on (rank ``rank``'s shard)."""
    sampler = ResumableSampler(
        len(data),  # type: ignore[arg-type]  # a map-style dataset has a length
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        start=start_batch * train.batch_size,
    )
    # an explicit generator keeps DataLoader from drawing worker seeds from the global RNG
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        data,
        batch_size=train.batch_size,
        sampler=sampler,
        num_workers=train.num_workers,
        drop_last=train.drop_last,
        collate_fn=collate_fn,
        generator=gen,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def epoch_batches(loader_of: Callable[[int, int], DataLoader], epoch: int, start_batch: int) -> Iterator[Any]:
    """The batches of epoch ``epoch`` from ``start_batch`` on, then of every later epoch, without end;
    ``loader_of(epoch, start_batch)`` builds each epoch's loader when its first batch is asked for."""
    while True:
        yield from loader_of(epoch, start_batch)
        epoch, start_batch = epoch + 1, 0


def val_loader(
    data: Dataset | None, train: TrainConfig, collate_fn: Callable[[list[Any]], Any] | None = None
) -> DataLoader | None:
    """The validation loader (all of ``data`` or its first ``train.eval_max_items``), or None without data."""
    if data is None:
        return None
    if train.eval_max_items is not None and train.eval_max_items < len(data):  # type: ignore[arg-type]
        data = Subset(data, range(train.eval_max_items))
    return DataLoader(data, batch_size=train.batch_size, shuffle=False, num_workers=train.num_workers,
                      collate_fn=collate_fn)
