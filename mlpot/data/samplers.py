"""Deterministic, DDP-aware samplers (exact resume: the order depends only on seed and epoch)."""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Indices of this rank's share, reshuffled each epoch from (seed, epoch).

    Training (``pad=True``) pads like ``DistributedSampler`` so that every rank
    takes the same number of steps. Evaluation (``pad=False``) never pads: each
    frame is seen by exactly one rank, so summed errors are exact (the padding of
    ``DistributedSampler`` would count some test frames twice).
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool = True):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            return torch.randperm(self.n, generator=g).tolist()
        return list(range(self.n))

    def __iter__(self):
        order = self._order()
        if self.pad and self.world_size > 1:
            total = math.ceil(self.n / self.world_size) * self.world_size
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        if self.pad and self.world_size > 1:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))


class BatchesOf(Sampler):
    """Lists of ``batch_size`` consecutive indices of ``sampler`` (the last one shorter), for datasets that read
    a whole batch at once; ``set_epoch`` reaches the inner sampler (Lightning calls it every epoch)."""

    def __init__(self, sampler: EpochSampler, batch_size: int):
        self.sampler, self.batch_size = sampler, int(batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):  # a generator: the order is drawn at the first batch, after Lightning's set_epoch
        order = list(self.sampler)
        for k in range(0, len(order), self.batch_size):
            yield order[k : k + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)
