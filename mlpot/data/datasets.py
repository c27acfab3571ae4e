"""Datasets over stores, one frame per item, and their batches (dicts, as ``Potential.predict_batch`` takes them).

* :class:`FrameDataset` (the autograd path): a frame as a graph with its neighbour list (computed when read)
  and labels; :func:`collate_graphs` merges graphs into one flat batch.
* :class:`JacobianDataset` (the cached-Jacobian path): a frame's stored descriptors and blocked pair
  Jacobians with its labels; batches by ``mlpot.data.jacobians.collate``.

Each item is read from disk when asked for, so memory is O(batch) whatever the size of the data.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from mlpot.data.graph import AtomicGraph, merge_graphs
from mlpot.data.jacobians import collate as collate_jacobians
from mlpot.data.jacobians import collate_arrays as collate_jacobians_arrays
from mlpot.data.store import FrameStore


class FrameDataset(Dataset):
    """Frames ``indices`` of ``store`` as single-structure graphs (``dtype``) with labels."""

    def __init__(self, store: FrameStore, indices, lookup: np.ndarray, cutoff: float, dtype=torch.float32):
        self.store, self.indices = store, np.asarray(indices, dtype=np.int64)
        self.lookup, self.cutoff, self.dtype = lookup, float(cutoff), dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> AtomicGraph:
        return self.store.graph(int(self.indices[k]), self.lookup, self.cutoff, dtype=self.dtype)


def collate_graphs(graphs: list[AtomicGraph]) -> dict:
    """One flat batch (a dict of the graph's fields, labels and masks included)."""
    g = merge_graphs(graphs)
    return {f.name: getattr(g, f.name) for f in fields(AtomicGraph)}


class JacobianDataset(Dataset):
    """Frames ``indices`` as records of stored descriptors and blocked pair Jacobians, with labels."""

    def __init__(self, store: FrameStore, jstore, indices, lookup: np.ndarray, dtype=torch.float32):
        self.store, self.jstore, self.indices = store, jstore, np.asarray(indices, dtype=np.int64)
        self.lookup, self.dtype = lookup, dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k) -> dict:
        if not isinstance(k, (int, np.integer)):  # a list of positions: the whole batch, collated
            return self.read_batch(k)
        idx = int(self.indices[k])
        rec = self.jstore.read(idx)
        d = self.store.read(idx)
        n = len(d["numbers"])
        dt = self.dtype
        rec["species"] = torch.from_numpy(self.lookup[d["numbers"]])
        rec["n_atoms"] = torch.tensor(n)
        rec["volume"] = torch.tensor(abs(float(np.linalg.det(d["cell"]))), dtype=dt)
        for name, shape in (("energy", ()), ("stress", (3, 3)), ("forces", (n, 3)), ("atomic_energies", (n,))):
            value = d[name]
            have = value is not None
            rec[name] = torch.as_tensor(np.zeros(shape) if not have else np.asarray(value).reshape(shape), dtype=dt)
            rec[name + "_mask"] = torch.tensor(have) if name in ("energy", "stress") else torch.full((n,), have)
        return rec

    def collate_fn(self):
        return partial(collate_jacobians, layout=self.jstore.layout)

    def read_batch(self, positions) -> dict:
        """The batch of dataset positions ``positions``, read from both stores with one call per run of consecutive
        frames, straight into the batch's arrays (its frames in store order)."""
        from mlpot.data.store import FLAG_BITS

        idx = np.sort(self.indices[np.asarray(positions, dtype=np.int64)])
        f = self.store.read_batch(idx)
        j = self.jstore.read_batch(idx)
        dt = self.dtype
        n_atoms = torch.from_numpy(f["n_atoms"])
        has = {k: torch.from_numpy((f["flags"] >> FLAG_BITS[k]) & 1 == 1) for k in ("energy", "forces", "stress",
                                                                                   "atomic_energies")}
        fd, ad = torch.from_numpy(f["frame_data"]), torch.from_numpy(f["atom_data"])
        labels = {"energy": fd[:, 9].to(dt), "energy_mask": has["energy"],
                  "stress": fd[:, 10:].reshape(-1, 3, 3).to(dt), "stress_mask": has["stress"],
                  "forces": ad[:, 3:6].to(dt), "forces_mask": has["forces"].repeat_interleave(n_atoms),
                  "atomic_energies": ad[:, 6].to(dt),
                  "atomic_energies_mask": has["atomic_energies"].repeat_interleave(n_atoms)}
        volume = torch.linalg.det(fd[:, :9].reshape(-1, 3, 3)).abs().to(dt)
        return collate_jacobians_arrays(self.jstore.layout, species=torch.from_numpy(self.lookup[f["numbers"]]),
                                        n_atoms=n_atoms, n_pairs=j["n_pairs"], edge_index=j["edge_index"],
                                        vec=j["vec"], G=j["G"], values=j["J"], volume=volume, labels=labels)


def unbatched(batch):
    """The DataLoader's collate function for datasets that return whole batches."""
    return batch


__all__ = ["FrameDataset", "JacobianDataset", "collate_graphs", "unbatched"]
