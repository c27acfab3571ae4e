"""The Jacobian store: descriptors and element-blocked pair Jacobians of a frame store's frames, on disk.

One HDF5 file beside the frame store (``jacobians-<frames key>-<descriptor key>-<subset>.h5``) holds, for
the frames it covers (``frames``: indices into the frame store, ascending), ``G`` (atoms, F), ``edge_index``
(pairs, 2; frame-local, int32), ``vec`` (pairs, 3), the flat blocked values ``J`` (``mlpot.data.jacobians``)
and the offsets of each frame in these arrays; the block layout and the training dtype are attributes.
Labels stay in the frame store. It is computed frame group by frame group in bounded memory, written to
a temporary file and renamed when complete, and reused by every run with the same frames, descriptor,
elements, cutoff and dtype (a sweep over seeds, splits, models or optimisers).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from mlpot.data.jacobians import CHUNK_BYTES, BlockLayout, LayoutError, compute_records, probe_layout
from mlpot.data.memory import Holdable
from mlpot.data.store import FrameStore, StoreError, check_store, file_lock, remove_stale_partials, runs

log = logging.getLogger(__name__)

JACOBIAN_FORMAT = 2  # 2: each frame's rows stored block by block
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


def descriptor_key(descriptor, elements, cutoff, dtype) -> str:
    """A fingerprint of what the stored descriptors and Jacobians depend on besides the frames."""
    spec = {"class": f"{type(descriptor).__module__}.{type(descriptor).__qualname__}", "config": descriptor.config(),
            "elements": list(elements), "cutoff": float(cutoff), "dtype": str(dtype), "format": JACOBIAN_FORMAT}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def subset_key(indices: np.ndarray, n_frames: int) -> str:
    if len(indices) == n_frames:
        return "all"
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:12]


def lookup_table(elements_z: list[int]) -> np.ndarray:
    """Atomic number → index into the element list (-1 for others)."""
    table = np.full(256, -1, dtype=np.int64)
    table[np.asarray(elements_z, dtype=np.int64)] = np.arange(len(elements_z))
    return table


def store_graphs(store: FrameStore, indices, lookup: np.ndarray, cutoff: float, labels: bool = False):
    """Single-structure graphs (float64) of the store's frames ``indices``, read one at a time."""
    for k in indices:
        yield store.graph(int(k), lookup, cutoff, labels=labels)


def _write(path: Path, store: FrameStore, indices: np.ndarray, descriptor, lookup, cutoff, dtype,
           layout: BlockLayout, chunk_bytes: int) -> None:
    import h5py

    from mlpot.progress import Progress

    itemsize = torch.empty((), dtype=dtype).element_size()
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    F = int(descriptor.n_features)
    progress = Progress(f"caching descriptors and pair Jacobians ({F} features)", total=len(indices))
    h5 = h5py.File(path, "w")
    try:
        specs = {"G": (np_dtype, (F,), max(1, (1 << 20) // (F * itemsize))), "edge_index": (np.int32, (2,), 1 << 16),
                 "vec": (np_dtype, (3,), 1 << 16), "J": (np_dtype, (), 1 << 18)}
        for name, (dt, tail, chunk) in specs.items():
            h5.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dt, chunks=(chunk, *tail))
        offsets = {"atom": [0], "pair": [0], "value": [0]}
        buf = {name: [] for name in specs}
        buffered = 0

        def flush():
            for name, parts in buf.items():
                if parts:
                    data = np.concatenate(parts)
                    ds = h5[name]
                    n0 = ds.shape[0]
                    ds.resize(n0 + len(data), axis=0)
                    ds[n0:] = data
                    parts.clear()

        graphs = store_graphs(store, indices, lookup, cutoff)
        for rec in compute_records(descriptor, graphs, layout, dtype, chunk_bytes):
            buf["G"].append(rec["G"].numpy())
            buf["edge_index"].append(rec["edge_index"].T.numpy().astype(np.int32))
            buf["vec"].append(rec["vec"].numpy())
            buf["J"].append(rec["J"].numpy())
            offsets["atom"].append(offsets["atom"][-1] + int(rec["n_atoms"]))
            offsets["pair"].append(offsets["pair"][-1] + int(rec["edge_index"].shape[1]))
            offsets["value"].append(offsets["value"][-1] + int(rec["J"].shape[0]))
            buffered += rec["J"].numel() * itemsize
            if buffered > 1 << 26:
                flush()
                buffered = 0
            progress.update()
        flush()
        for name, off in offsets.items():
            h5.create_dataset(f"{name}_offset", data=np.asarray(off, dtype=np.int64))
        h5.create_dataset("frames", data=np.asarray(indices, dtype=np.int64))
        h5.attrs.update({"format": JACOBIAN_FORMAT, "frame_store": store.key, "layout": layout.to_json(),
                         "dtype": DTYPE_NAMES[dtype], "n_features": F, "mlpot_version": _version()})
        h5.attrs["complete"] = True
    finally:
        h5.close()
        progress.close()


def _version() -> str:
    from mlpot import __version__

    return str(__version__)


class JacobianStore(Holdable):
    """A read-only Jacobian store; like :class:`FrameStore`, opened lazily in each process."""

    def __init__(self, path):
        self.path = Path(path)
        self._h5 = None
        self._pid = None
        h5 = self.h5
        check_store(h5, self.path, "Jacobian store", JACOBIAN_FORMAT)
        self.layout = BlockLayout.from_json(h5.attrs["layout"])
        self.dtype = torch.float32 if h5.attrs["dtype"] == "float32" else torch.float64
        self.frames = np.asarray(h5["frames"][:])
        self.offsets = {name: np.asarray(h5[f"{name}_offset"][:]) for name in ("atom", "pair", "value")}
        if len(self.offsets["atom"]) != len(self.frames) + 1:
            raise StoreError("Jacobian store is inconsistent; delete it to rebuild", str(self.path))

    @property
    def h5(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=1 << 24)
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = state["_pid"] = None
        return state

    def nbytes(self) -> int:
        """Size of the file."""
        return self.path.stat().st_size

    def row(self, frame: int) -> int:
        r = int(np.searchsorted(self.frames, frame))
        if r >= len(self.frames) or self.frames[r] != frame:
            raise KeyError(f"frame {frame} is not in the Jacobian store {self.path}")
        return r

    def read_batch(self, frames) -> dict:
        """Frames ``frames`` (frame-store indices, ascending) as concatenated arrays read with one call per run
        of consecutive rows: G (A, F), edge_index (2, P; frame-local), vec (P, 3), J (V,), n_pairs (B,)."""
        rows = np.searchsorted(self.frames, np.asarray(frames, dtype=np.int64))
        if np.any(self.frames[np.minimum(rows, len(self.frames) - 1)] != frames):
            raise KeyError(f"frames missing from the Jacobian store {self.path}")
        off = self.offsets
        n_atoms, n_pairs, n_vals = (np.diff(off[k])[rows] for k in ("atom", "pair", "value"))
        h5 = self.h5
        np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        G = np.empty((int(n_atoms.sum()), h5["G"].shape[1]), dtype=np_dtype)
        edges = np.empty((int(n_pairs.sum()), 2), dtype=np.int32)
        vec = np.empty((int(n_pairs.sum()), 3), dtype=np_dtype)
        J = np.empty(int(n_vals.sum()), dtype=np_dtype)
        a = p = v = 0
        for r0, r1, _ in runs(rows):
            a0, a1 = int(off["atom"][r0]), int(off["atom"][r1])
            p0, p1 = int(off["pair"][r0]), int(off["pair"][r1])
            v0, v1 = int(off["value"][r0]), int(off["value"][r1])
            h5["G"].read_direct(G, np.s_[a0:a1], np.s_[a : a + a1 - a0])
            h5["edge_index"].read_direct(edges, np.s_[p0:p1], np.s_[p : p + p1 - p0])
            h5["vec"].read_direct(vec, np.s_[p0:p1], np.s_[p : p + p1 - p0])
            if v1 > v0:
                h5["J"].read_direct(J, np.s_[v0:v1], np.s_[v : v + v1 - v0])
            a, p, v = a + a1 - a0, p + p1 - p0, v + v1 - v0
        return {"G": torch.from_numpy(G), "edge_index": torch.from_numpy(edges.T.astype(np.int64)),
                "vec": torch.from_numpy(vec), "J": torch.from_numpy(J), "n_pairs": torch.from_numpy(n_pairs)}

    def read_descriptors(self, frames) -> torch.Tensor:
        """G (A, F) of frames ``frames`` (ascending), concatenated, one call per run of consecutive rows."""
        rows = np.searchsorted(self.frames, np.asarray(frames, dtype=np.int64))
        off = self.offsets["atom"]
        ds = self.h5["G"]
        out = np.empty((int(np.diff(off)[rows].sum()), ds.shape[1]), dtype=ds.dtype)
        a = 0
        for r0, r1, _ in runs(rows):
            a0, a1 = int(off[r0]), int(off[r1])
            ds.read_direct(out, np.s_[a0:a1], np.s_[a : a + a1 - a0])
            a += a1 - a0
        return torch.from_numpy(out)

    def read(self, frame: int) -> dict:
        """G, edge_index, vec and J of one frame (index into the frame store) as tensors."""
        r = self.row(frame)
        a0, a1 = self.offsets["atom"][r : r + 2]
        p0, p1 = self.offsets["pair"][r : r + 2]
        v0, v1 = self.offsets["value"][r : r + 2]
        h5 = self.h5
        return {"G": torch.from_numpy(h5["G"][a0:a1]),
                "edge_index": torch.from_numpy(h5["edge_index"][p0:p1].astype(np.int64).T.copy()),
                "vec": torch.from_numpy(h5["vec"][p0:p1]), "J": torch.from_numpy(h5["J"][v0:v1])}


def open_jacobian_store(store: FrameStore, indices, descriptor, elements_z: list[int], cutoff: float, dtype,
                        cache_dir, chunk_bytes: int = CHUNK_BYTES) -> JacobianStore:
    """The Jacobian store of ``store``'s frames ``indices`` for ``descriptor`` (built on first use)."""
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    cache_dir = Path(cache_dir)
    symbols = [str(z) for z in elements_z]
    key = f"{store.key}-{descriptor_key(descriptor, symbols, cutoff, dtype)}-{subset_key(indices, len(store))}"
    path = cache_dir / f"jacobians-{key}.h5"

    def try_open():
        if not path.exists():
            return None
        try:
            return JacobianStore(path)
        except Exception as exc:  # noqa: BLE001 - incomplete, truncated or foreign
            log.warning("%s: unusable Jacobian store (%s); rebuilding it", path, exc)
            return None

    jstore = try_open()
    if jstore is not None:
        return jstore
    with file_lock(cache_dir / f".jacobians-{key}.lock"):
        jstore = try_open()
        if jstore is not None:
            return jstore
        remove_stale_partials(path)
        lookup = lookup_table(elements_z)
        layout = probe_layout(descriptor)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        while True:
            try:
                _write(tmp, store, indices, descriptor, lookup, cutoff, dtype, layout, chunk_bytes)
                break
            except LayoutError as exc:  # a column the probe missed: widen that block and start again
                log.warning("%s; widening the block and recomputing", exc)
                layout = layout.widen(exc.block, exc.columns)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        os.replace(tmp, path)
    return JacobianStore(path)


__all__ = ["JacobianStore", "open_jacobian_store", "descriptor_key", "lookup_table", "store_graphs",
           "JACOBIAN_FORMAT"]
