"""The frame store: labelled frames converted once into one HDF5 file and read lazily, frame by frame.

Why HDF5 (h5py): one portable file with chunked, resizable arrays, partial reads of any slice without
loading the rest, concurrent readers (DataLoader workers, DDP ranks), inspection with standard tools
(``h5ls``, ``h5py``), wheels for every platform, and the format MACE uses for its preprocessed data.

Conversion (:func:`convert`) streams any readable source (extxyz and every ASE format, PWmat MOVEMENT, aenet
XSF, n2p2 ``input.data``) frame by frame through the readers of ``mlpot.data.frames`` (labels under
mlpot's names and units, validated), so memory stays O(frame) whatever the file size. A store holds,
all float64:

* per atom, ``numbers`` (uint8) and ``atom_data`` (A, 7): positions (3), forces (3), atomic energy (1);
* per frame, ``atom_offset`` (n + 1) into the atom arrays, ``frame_data`` (n, 19): cell (9), energy (1),
  stress (9, eV/Å³, ASE sign); ``flags`` (uint8 bits: energy, forces, stress, atomic energies, pbc x/y/z,
  step); ``meta`` (n, 5) int64: config_type id, trajectory id, step, source file id, frame index in that
  file; ``frame_hash`` (16 bytes of the species, positions, cell and periodicity); ``shortest`` (the shortest
  interatomic distance, periodic images included, up to ``SHORT_RANGE``; atoms closer than 0.1 Å stop the
  conversion with the file and frame named);
* attributes: ``format``, ``mlpot_version``, ``key``, ``sources`` (path, size, SHA-256 of each file),
  ``label_keys``, the tables of config_type and trajectory names, ``elements`` (atomic numbers), ``complete``.

:func:`open_store` returns the store of a list of sources, building it on first use: its file name is a key of
the sources' *content* (SHA-256; a per-folder memo of path, size and mtime avoids re-hashing unchanged
files) and of the label keys and format, so any later run or sweep on the same data reuses it and a changed
source gets a new store. A store is written to a temporary file and renamed only when complete (a killed
conversion never leaves a store that looks complete); a store that cannot be read, or lacks the
``complete`` mark, is rebuilt; one written by another store format gets a clear message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mlpot.data.frames import LABELS, LabelKeys, get_label, iter_frames
from mlpot.data.memory import Holdable
from mlpot.errors import DataError
from mlpot.files import write_text

log = logging.getLogger(__name__)

STORE_FORMAT = 2  # 2: per-frame shortest interatomic distance
SHORT_RANGE = 1.0  # Å: the shortest distance of each frame is recorded up to this (a frame without a closer pair: 1.0)
FLAG_BITS = {"energy": 0, "forces": 1, "stress": 2, "atomic_energies": 3, "pbc_x": 4, "pbc_y": 5, "pbc_z": 6,
             "step": 7}
META_COLUMNS = ("config_type", "trajectory", "step", "source", "source_frame")
ATOM_CHUNK, FRAME_CHUNK = 8192, 1024


class StoreError(DataError):
    """A store that cannot be used (written by another format, unreadable, half-written)."""


def _mlpot_version() -> str:
    from mlpot import __version__

    return str(__version__)


# -- content keys ---------------------------------------------------------------------------------
def _sha256(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (a sidecar file), for builds shared by processes."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_stale_partials(path: Path) -> None:
    """Delete the temporary files ``.<name>.<pid>.partial`` of ``path`` left by processes that no longer run
    (a conversion killed mid-way)."""
    for tmp in path.parent.glob(f".{path.name}.*.partial"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        except PermissionError:  # another user's live process
            pass


def content_hashes(files, memo_dir: Path | None = None) -> list[str]:
    """SHA-256 of each file. With ``memo_dir``, hashes of files whose (path, size, mtime) are unchanged since
    the last call are taken from ``<memo_dir>/hashes.json`` instead of re-reading the files."""
    memo_path = None if memo_dir is None else Path(memo_dir) / "hashes.json"
    memo = {}
    if memo_path is not None and memo_path.exists():
        with contextlib.suppress(ValueError, OSError):
            memo = json.loads(memo_path.read_text())
    out, changed = [], False
    for f in files:
        f = Path(f).resolve()
        st = f.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = memo.get(str(f))
        if entry and entry.get("stamp") == stamp:
            out.append(entry["sha256"])
            continue
        digest = _sha256(f)
        memo[str(f)] = {"stamp": stamp, "sha256": digest}
        out.append(digest)
        changed = True
    if changed and memo_path is not None:
        write_text(memo_path, json.dumps(memo))
    return out


def store_key(hashes: list[str], keys: LabelKeys, format: str | None) -> str:
    """The key of a store: the sources' content (in order), the label keys, the format and the store format."""
    spec = {"sources": list(hashes), "keys": asdict(keys), "format": format, "store_format": STORE_FORMAT}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def frame_hash(numbers, positions, cell, pbc) -> bytes:
    """16 bytes identifying a structure (species, positions, cell, periodicity), labels left out."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(positions, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(cell, dtype=np.float64).tobytes())
    h.update(np.asarray(pbc, dtype=bool).tobytes())
    return h.digest()


# -- writing --------------------------------------------------------------------------------------
class _Appender:
    """Buffered appends to resizable HDF5 datasets (one flush per ~1e5 atoms)."""

    def __init__(self, h5, specs: dict):
        self.h5, self.buffers, self.count = h5, {name: [] for name in specs}, {name: 0 for name in specs}
        for name, (dtype, tail, chunk) in specs.items():
            h5.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=(chunk, *tail))

    def add(self, name: str, rows) -> None:
        self.buffers[name].append(rows)

    def flush(self) -> None:
        for name, parts in self.buffers.items():
            if not parts:
                continue
            data = np.concatenate(parts)
            ds = self.h5[name]
            n = self.count[name]
            ds.resize(n + len(data), axis=0)
            ds[n:] = data
            self.count[name] = n + len(data)
            parts.clear()


class StoreWriter:
    """Appends frames (``ase.Atoms`` with mlpot labels) to a new store file."""

    def __init__(self, path: Path):
        import h5py

        self.path = Path(path)
        self.h5 = h5py.File(self.path, "w")
        self.data = _Appender(self.h5, {
            "numbers": (np.uint8, (), ATOM_CHUNK), "atom_data": (np.float64, (7,), ATOM_CHUNK),
            "frame_data": (np.float64, (19,), FRAME_CHUNK), "flags": (np.uint8, (), FRAME_CHUNK),
            "meta": (np.int64, (5,), FRAME_CHUNK), "frame_hash": ("S16", (), FRAME_CHUNK),
            "shortest": (np.float32, (), FRAME_CHUNK)})
        self.offsets = [0]
        self.sources: list[dict] = []
        self.tables = {"config_type": {}, "trajectory": {}}
        self.elements: set[int] = set()
        self._atoms_buffered = 0

    def add_source(self, path, size: int, sha256: str) -> int:
        self.sources.append({"path": str(path), "size": int(size), "sha256": sha256})
        return len(self.sources) - 1

    def _table_id(self, table: str, value) -> int:
        if value is None:
            return -1
        key = json.dumps(value.item() if hasattr(value, "item") else value)
        return self.tables[table].setdefault(key, len(self.tables[table]))

    def add(self, atoms, source_id: int, source_frame: int) -> None:
        n = len(atoms)
        numbers = atoms.numbers
        if numbers.max() > 255:
            raise DataError(f"atomic number {numbers.max()} out of range", self.sources[source_id]["path"], source_frame)
        pos, cell, pbc = atoms.positions, atoms.cell.array, np.asarray(atoms.pbc, dtype=bool)
        labels = {k: get_label(atoms, k) for k in LABELS}
        atom_data = np.zeros((n, 7))
        atom_data[:, :3] = pos
        if labels["forces"] is not None:
            atom_data[:, 3:6] = labels["forces"]
        if labels["atomic_energies"] is not None:
            atom_data[:, 6] = labels["atomic_energies"]
        frame_data = np.zeros(19)
        frame_data[:9] = cell.reshape(-1)
        if labels["energy"] is not None:
            frame_data[9] = labels["energy"]
        if labels["stress"] is not None:
            frame_data[10:] = np.asarray(labels["stress"]).reshape(-1)
        step = atoms.info.get("step")
        flags = sum(1 << FLAG_BITS[k] for k in LABELS if labels[k] is not None)
        flags |= sum(1 << FLAG_BITS[k] for k, p in zip(("pbc_x", "pbc_y", "pbc_z"), pbc) if p)
        has_step = step is not None and np.ndim(step) == 0 and float(step).is_integer()
        flags |= (1 << FLAG_BITS["step"]) if has_step else 0
        meta = [self._table_id("config_type", atoms.info.get("config_type")),
                self._table_id("trajectory", atoms.info.get("trajectory")),
                int(step) if has_step else 0, source_id, source_frame]
        self.data.add("numbers", numbers.astype(np.uint8))
        self.data.add("atom_data", atom_data)
        self.data.add("frame_data", frame_data[None])
        self.data.add("flags", np.array([flags], dtype=np.uint8))
        self.data.add("meta", np.array([meta], dtype=np.int64))
        self.data.add("frame_hash", np.array([frame_hash(numbers, pos, cell, pbc)], dtype="S16"))
        self.data.add("shortest", np.array([self._shortest(atoms, source_id, source_frame)], dtype=np.float32))
        self.offsets.append(self.offsets[-1] + n)
        self.elements.update(int(z) for z in np.unique(numbers))
        self._atoms_buffered += n
        if self._atoms_buffered >= 1 << 17:
            self.data.flush()
            self._atoms_buffered = 0

    def _shortest(self, atoms, source_id: int, source_frame: int) -> float:
        from mlpot.data.neighbors import MIN_DISTANCE, shortest_distance
        from mlpot.errors import OverlappingAtomsError

        src = self.sources[source_id]["path"]
        d, i, j = shortest_distance(atoms.positions, atoms.cell.array, atoms.pbc, SHORT_RANGE, src, source_frame)
        if d < MIN_DISTANCE:
            raise OverlappingAtomsError(f"atoms {i} and {j} are {d:.3g} Å apart (< {MIN_DISTANCE} Å)", src, source_frame)
        return d

    def finish(self, key: str, label_keys: LabelKeys, format: str | None) -> None:
        self.data.flush()
        h5 = self.h5
        h5.create_dataset("atom_offset", data=np.asarray(self.offsets, dtype=np.int64))
        attrs = {"format": STORE_FORMAT, "mlpot_version": _mlpot_version(), "key": key,
                 "sources": json.dumps(self.sources), "label_keys": json.dumps(asdict(label_keys)),
                 "source_format": json.dumps(format),
                 "config_types": json.dumps([json.loads(k) for k in self.tables["config_type"]]),
                 "trajectories": json.dumps([json.loads(k) for k in self.tables["trajectory"]]),
                 "elements": json.dumps(sorted(self.elements)), "n_frames": len(self.offsets) - 1,
                 "n_atoms": self.offsets[-1]}
        h5.attrs.update(attrs)
        h5.attrs["complete"] = True  # last: a store without it was not finished
        h5.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.h5.close()


def convert(sources, path, keys: LabelKeys | None = None, format: str | None = None, key: str = "",
            hashes: list[str] | None = None) -> Path:
    """Convert ``sources`` (files) into a store at ``path`` (written to a temporary file, then renamed)."""
    from mlpot.progress import Progress

    keys = keys or LabelKeys()
    sources = [Path(s) for s in sources]
    hashes = hashes or [_sha256(s) for s in sources]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    writer = StoreWriter(tmp)
    sizes = [s.stat().st_size for s in sources]
    progress = Progress(f"converting {len(sources)} file(s) to {path.name}", total=sum(sizes), unit="B",
                        count_unit="frames")
    done = 0
    try:
        for src, size, digest in zip(sources, sizes, hashes):
            sid = writer.add_source(src, size, digest)
            position = {"bytes": 0}
            for k, atoms in enumerate(iter_frames(src, keys, format=format, position=position)):
                writer.add(atoms, sid, k)
                progress.update(count=1, value=done + position["bytes"])
            done += size
            progress.update(count=0, value=done)
        if len(writer.offsets) == 1:
            raise DataError("no frame in the data", str(sources[0]) if len(sources) == 1 else None)
        writer.finish(key, keys, format)
        os.replace(tmp, path)
    except BaseException:
        writer.abort()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        progress.close()
    return path


# -- reading --------------------------------------------------------------------------------------
class FrameStore(Holdable):
    """A read-only store. Frame reads are lazy (O(frame) memory); the file is opened on first use in each
    process (DataLoader workers and DDP ranks each get their own handle). In memory: the atom offsets and
    one flag byte per frame."""

    def __init__(self, path):
        self.path = Path(path)
        self._h5 = None
        self._pid = None
        h5 = self.h5
        check_store(h5, self.path, "frame store")
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
        self.offsets = np.asarray(h5["atom_offset"][:], dtype=np.int64)
        self.flags = np.asarray(h5["flags"][:], dtype=np.uint8)
        if len(self.flags) != len(self.offsets) - 1 or int(h5["numbers"].shape[0]) != int(self.offsets[-1]):
            raise StoreError("store is inconsistent (array lengths differ); delete it to rebuild", str(self.path))
        self.sources = json.loads(self.attrs["sources"])
        self.config_types = json.loads(self.attrs["config_types"])
        self.trajectories = json.loads(self.attrs["trajectories"])
        self.elements = [int(z) for z in json.loads(self.attrs["elements"])]
        self.key = str(self.attrs.get("key", ""))

    @property
    def h5(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=1 << 22)
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):  # picklable for DataLoader workers: reopen in the child
        state = dict(self.__dict__)
        state["_h5"] = state["_pid"] = None
        return state

    def close(self) -> None:
        if self._h5 is not None:
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None

    def __len__(self) -> int:
        return len(self.flags)

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.offsets)

    def has(self, label: str) -> np.ndarray:
        """Per frame: whether it carries ``label`` (energy, forces, stress, atomic_energies)."""
        return (self.flags >> FLAG_BITS[label]) & 1 == 1

    def meta(self) -> dict[str, np.ndarray]:
        """Columns of the per-frame metadata (``META_COLUMNS``; ids index ``config_types``/``trajectories``,
        -1 where a frame has none; ``step`` is valid where ``has_step``)."""
        m = np.asarray(self.h5["meta"][:])
        out = {name: m[:, k] for k, name in enumerate(META_COLUMNS)}
        out["has_step"] = (self.flags >> FLAG_BITS["step"]) & 1 == 1
        return out

    def source_of(self, k: int) -> tuple[str, int]:
        """(file, frame index in that file) of frame ``k``, for messages."""
        m = self.h5["meta"][k]
        return self.sources[int(m[3])]["path"], int(m[4])

    def shortest(self) -> np.ndarray:
        """Per frame, the shortest interatomic distance (Å), ``SHORT_RANGE`` where no pair is closer."""
        return np.asarray(self.h5["shortest"][:], dtype=np.float64)

    def frame_hashes(self) -> np.ndarray:
        return np.asarray(self.h5["frame_hash"][:])

    def read(self, k: int) -> dict:
        """Frame ``k`` as numpy arrays: numbers, positions, cell, pbc and the labels it has (others None)."""
        a0, a1 = int(self.offsets[k]), int(self.offsets[k + 1])
        h5 = self.h5
        atom = h5["atom_data"][a0:a1]
        fd = h5["frame_data"][k]
        flags = int(self.flags[k])
        bit = lambda name: bool((flags >> FLAG_BITS[name]) & 1)  # noqa: E731
        return {
            "numbers": np.asarray(h5["numbers"][a0:a1], dtype=np.int64),
            "positions": atom[:, :3],
            "cell": fd[:9].reshape(3, 3),
            "pbc": np.array([bit("pbc_x"), bit("pbc_y"), bit("pbc_z")]),
            "energy": float(fd[9]) if bit("energy") else None,
            "forces": atom[:, 3:6] if bit("forces") else None,
            "stress": fd[10:].reshape(3, 3) if bit("stress") else None,
            "atomic_energies": atom[:, 6] if bit("atomic_energies") else None,
        }

    def read_batch(self, indices) -> dict:
        """Frames ``indices`` (ascending) as concatenated arrays, read with one call per run of consecutive
        frames straight into the output: numbers (A,), atom_data (A, 7), frame_data (B, 19), flags (B,),
        n_atoms (B,)."""
        indices = np.asarray(indices, dtype=np.int64)
        n_atoms = self.n_atoms[indices]
        h5 = self.h5
        out = {"numbers": np.empty(int(n_atoms.sum()), dtype=np.uint8),
               "atom_data": np.empty((int(n_atoms.sum()), 7)), "frame_data": np.empty((len(indices), 19)),
               "flags": self.flags[indices], "n_atoms": n_atoms}
        a = 0
        for k0, k1, f0 in runs(indices):
            a0, a1 = int(self.offsets[k0]), int(self.offsets[k1])
            h5["numbers"].read_direct(out["numbers"], np.s_[a0:a1], np.s_[a : a + a1 - a0])
            h5["atom_data"].read_direct(out["atom_data"], np.s_[a0:a1], np.s_[a : a + a1 - a0])
            h5["frame_data"].read_direct(out["frame_data"], np.s_[k0:k1], np.s_[f0 : f0 + k1 - k0])
            a += a1 - a0
        return out

    def graph(self, k: int, lookup: np.ndarray, cutoff: float, dtype=None, labels: bool = True):
        """Frame ``k`` as a single-structure graph with its neighbour list (``lookup``: atomic number → species
        index), float64 unless ``dtype``; errors name the source file and frame."""
        import torch

        from mlpot.data.graph import graph_from_arrays

        d = self.read(k)
        try:
            return graph_from_arrays(d["positions"], lookup[d["numbers"]], d["cell"], d["pbc"], cutoff,
                                     dtype=dtype or torch.float64, labels=d if labels else None)
        except DataError as exc:
            raise exc.located(*self.source_of(k)) from None

    def atoms(self, k: int):
        """Frame ``k`` as an ``ase.Atoms`` with mlpot's labels and its provenance in ``info``."""
        from ase import Atoms

        from mlpot.data.frames import set_label

        d = self.read(k)
        atoms = Atoms(numbers=d["numbers"], positions=d["positions"], cell=d["cell"], pbc=d["pbc"])
        for label in LABELS:
            if d[label] is not None:
                set_label(atoms, label, d[label])
        m = self.h5["meta"][k]
        if m[0] >= 0:
            atoms.info["config_type"] = self.config_types[int(m[0])]
        if m[1] >= 0:
            atoms.info["trajectory"] = self.trajectories[int(m[1])]
        if (self.flags[k] >> FLAG_BITS["step"]) & 1:
            atoms.info["step"] = int(m[2])
        atoms.info["mlpot_source"] = self.sources[int(m[3])]["path"]
        atoms.info["mlpot_frame"] = int(m[4])
        return atoms

    def energies(self) -> np.ndarray:
        """Per frame, the energy label (eV; meaningless where ``has("energy")`` is False)."""
        return np.asarray(self.h5["frame_data"][:, 9])

    def composition(self, elements: list[int], chunk: int = 1 << 20) -> np.ndarray:
        """Per frame, the count of each element of ``elements`` (atomic numbers): (n_frames, n_elements),
        read in chunks of atoms once and kept (the data checks and the E0 fit both need it)."""
        key = tuple(int(z) for z in elements)
        memo = self.__dict__.setdefault("_composition", {})
        if key not in memo:
            memo[key] = self._composition_of(elements, chunk)
        return memo[key]

    def _composition_of(self, elements, chunk: int) -> np.ndarray:
        lookup = np.full(256, len(elements), dtype=np.int64)
        lookup[np.asarray(elements, dtype=np.int64)] = np.arange(len(elements))
        m = len(elements) + 1
        counts = np.zeros((len(self), m), dtype=np.int64)
        total = int(self.offsets[-1])
        for a0 in range(0, total, chunk):
            a1 = min(total, a0 + chunk)
            z = lookup[np.asarray(self.h5["numbers"][a0:a1], dtype=np.int64)]
            frames = np.searchsorted(self.offsets, np.arange(a0, a1), side="right") - 1
            f0, f1 = int(frames[0]), int(frames[-1]) + 1
            counts[f0:f1] += np.bincount((frames - f0) * m + z, minlength=(f1 - f0) * m).reshape(f1 - f0, m)
        return counts[:, : len(elements)]


def runs(indices: np.ndarray):
    """(first, last + 1, position) of each run of consecutive values in ascending ``indices``."""
    if len(indices) == 0:
        return
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(indices)]])
    for s, e in zip(starts.tolist(), ends.tolist()):
        yield int(indices[s]), int(indices[e - 1]) + 1, s


def check_store(h5, path: Path, what: str, fmt: int = STORE_FORMAT) -> None:
    """Raise :class:`StoreError` for a store of another format or one that was not completed."""
    found = h5.attrs.get("format")
    if found is None or not bool(h5.attrs.get("complete", False)):
        raise StoreError(f"{what} is incomplete (its conversion did not finish); delete it to rebuild", str(path))
    if int(found) != fmt:
        version = h5.attrs.get("mlpot_version", "?")
        raise StoreError(f"{what} has format {int(found)} (written by mlpot {version}); this mlpot "
                         f"({_mlpot_version()}) reads format {fmt}: rebuild it with mlpot-prepare", str(path))


def _try_open(path: Path):
    """The store at ``path``, or None (with a log line) when it is missing, unreadable or not complete."""
    if not path.exists():
        return None
    try:
        return FrameStore(path)
    except StoreError as exc:
        log.warning("%s; rebuilding it", exc)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign HDF5 file
        log.warning("%s: unreadable store (%s); rebuilding it", path, type(exc).__name__)
    return None


def open_store(sources, cache_dir, keys: LabelKeys | None = None, format: str | None = None) -> FrameStore:
    """The store of ``sources`` in ``cache_dir`` (``frames-<key>.h5``), converted on first use.

    Concurrent callers (DDP ranks, parallel sweep jobs) wait for one conversion through a lock file."""
    keys = keys or LabelKeys()
    cache_dir = Path(cache_dir)
    sources = [Path(s) for s in sources]
    hashes = content_hashes(sources, cache_dir)
    key = store_key(hashes, keys, format)
    path = cache_dir / f"frames-{key}.h5"
    store = _try_open(path)
    if store is not None:
        return store
    with file_lock(cache_dir / f".frames-{key}.lock"):
        store = _try_open(path)  # built by another process while we waited
        if store is not None:
            return store
        with contextlib.suppress(OSError):
            path.unlink()
        remove_stale_partials(path)
        log.info("converting %d source file(s) into the frame store %s", len(sources), path)
        convert(sources, path, keys, format, key=key, hashes=hashes)
    return FrameStore(path)


def open_prepared(path) -> FrameStore:
    """A store given directly (``data.path=<store>.h5``, e.g. written by ``mlpot-prepare``)."""
    path = Path(path)
    try:
        return FrameStore(path)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"not a readable mlpot store ({type(exc).__name__})", str(path)) from None


def is_store_file(path) -> bool:
    """Whether ``path`` is an HDF5 file (by its signature), i.e. a store to open rather than a source."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


__all__ = ["FrameStore", "StoreError", "open_store", "open_prepared", "convert", "content_hashes", "store_key",
           "frame_hash", "is_store_file", "STORE_FORMAT", "file_lock", "remove_stale_partials"]
