"""An HDF5 file held in memory: the stores (:mod:`mlpot.data.store`, :mod:`mlpot.data.jacobian_store`) read their
batches with ``h5[name].read_direct(out, source, dest)``, one call per run of consecutive frames. Each such call
costs ~0.2 ms of h5py overhead whatever its size, which is most of the time of a batch of small frames (the
built-in data: 11 ms of reading against 7 ms of training per batch of 4 frames). A store small enough for
``data.keep_in_memory_gb`` is read once into NumPy arrays behind the same interface, so the readers do not
change and a batch is a few array copies."""

from __future__ import annotations

import numpy as np


class MemoryDataset:
    """One HDF5 dataset as a NumPy array, with the parts of ``h5py.Dataset`` the stores use."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape, self.dtype, self.size = array.shape, array.dtype, array.size

    def __getitem__(self, key):
        return self.array[key]

    def __len__(self) -> int:
        return len(self.array)

    def read_direct(self, dest: np.ndarray, source_sel=np.s_[...], dest_sel=np.s_[...]) -> None:
        dest[dest_sel] = self.array[source_sel]


class MemoryFile(dict):
    """Every dataset of an open ``h5py.File`` (top-level datasets only, as the stores write them) in memory;
    ``attrs`` as read from the file."""

    def __init__(self, h5):
        super().__init__({name: MemoryDataset(ds[()]) for name, ds in h5.items() if hasattr(ds, "shape")})
        self.attrs = dict(h5.attrs)

    @property
    def nbytes(self) -> int:
        return sum(ds.array.nbytes for ds in self.values())


def file_bytes(h5) -> int:
    """Bytes the datasets of an open HDF5 file take in memory."""
    return sum(int(ds.size) * ds.dtype.itemsize for ds in h5.values() if hasattr(ds, "shape"))


class Holdable:
    """For a store class whose ``h5`` property opens its file lazily per process (``_h5``, ``_pid``)."""

    def data_bytes(self) -> int:
        """Bytes of the stored arrays (without HDF5's chunk padding): what :meth:`hold_in_memory` holds."""
        return file_bytes(self.h5)

    def hold_in_memory(self) -> int:
        """Read every dataset into memory once; later reads slice arrays instead of calling HDF5. Returns the bytes
        held. A DataLoader worker process (another pid) reopens the file instead."""
        import os

        if not isinstance(self._h5, MemoryFile):
            self._h5 = MemoryFile(self.h5)
            self._pid = os.getpid()
        return self._h5.nbytes


__all__ = ["Holdable", "MemoryDataset", "MemoryFile", "file_bytes"]
