"""AtomsDataModule: sources → frame store → splits (index lists) → statistics → batches read from disk.

Frames never live in memory all at once: the sources are converted once into a frame store
(``mlpot.data.store``), splits are lists of store indices, training statistics come from streaming passes
(``mlpot.data.statistics``), and batches are read frame by frame by the DataLoader, each DDP rank reading
only its own share. Batches are of one of two kinds (``prepare``):

* ``autograd``: frames as graphs; descriptors and their derivatives are computed per batch by autograd
  (``Potential.forward`` with ``create_graph``), memory proportional to the batch;
* ``jacobian``: descriptors and element-blocked pair Jacobians computed once into a Jacobian store beside the
  frame store (``mlpot.data.jacobian_store``) and read in batches (``Potential.forward_cached``).

:func:`choose_force_path` decides between them for ``training.forces=auto`` and says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from ase.data import atomic_numbers, chemical_symbols
from torch.utils.data import DataLoader

from mlpot.data.datasets import FrameDataset, JacobianDataset, collate_graphs, unbatched
from mlpot.data.frames import LabelKeys
from mlpot.data.samplers import BatchesOf, EpochSampler
from mlpot.data.store import FrameStore, is_store_file, open_prepared, open_store
from mlpot.descriptors.geometry import edge_vectors
from mlpot.errors import DataPathError, MissingLabelError, UnknownElementError
from mlpot.files import write_text

log = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = Path("outputs") / "cache"
FORCE_PATHS = ("auto", "autograd", "jacobian")


def _files(path: Path, name: str | None, pattern: str) -> list[Path]:
    if path.is_file():
        return [path]
    if name:
        f = path / name
        if not f.exists():
            raise DataPathError("no such file", str(f))
        return [f]
    files = sorted(p for p in path.glob(pattern) if p.is_file())
    if not files:
        raise DataPathError(f"no data file matching '{pattern}'", str(path))
    return files


def is_builtin(path) -> bool:
    """Whether a ``data.path`` value selects the built-in EMT Cu data (null, empty or ``builtin``)."""
    return path in (None, "", "builtin")


class AtomsDataModule(pl.LightningDataModule):
    """Frames from files (or a prepared store), split, and served in batches read from disk.

    ``path``: a file, a folder, or a store written by ``mlpot-prepare`` (``None``: the built-in EMT Cu set,
    generated on first use). ``train_file`` / ``test_file``: names inside ``path``; with a test file, the test
    split is that file and validation is carved from the training file (``val_fraction``).
    ``cache_dir``: where frame stores, Jacobian stores and statistics are kept between runs (default
    ``outputs/cache``). ``batch_size``: frames per batch (for full-batch L-BFGS: per forward pass).
    ``keep_in_memory_gb``: full-batch L-BFGS keeps the training split's batches in memory between its
    evaluations when they take at most this much (0: always read them again).
    """

    def __init__(self, path=None, train_file=None, test_file=None, pattern="*.xyz", format=None, keys=None,
                 split=None, val_fraction=0.1, batch_size=8, elements=None, num_workers=0, builtin=None,
                 cache_dir=None, keep_in_memory_gb=2.0, checks=None):
        super().__init__()
        self.path = None if is_builtin(path) else Path(path)
        self.train_file, self.test_file, self.pattern, self.format = train_file, test_file, pattern, format
        self.keys = LabelKeys(**(keys or {}))
        self.split = dict(split or {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0})
        self.val_fraction, self.batch_size, self.num_workers = val_fraction, int(batch_size), int(num_workers)
        self.elements = list(elements) if elements else None
        self.builtin = dict(builtin or {})
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.store: FrameStore | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.kind = "autograd"
        self.cutoff: float | None = None
        self.dtype = torch.float32
        self.jstore = None
        self.full_split = False  # set for full-batch L-BFGS: one training step per epoch over the whole split
        self._layout = None
        self._sources = None
        self.keep_in_memory_gb = keep_in_memory_gb
        from mlpot.data.checks import DataChecks

        self.checks = DataChecks(**dict(checks or {}))  # checked here: a bad switch fails before any data is read
        self._kept: dict[str, list] = {}
        self._held = False

    # -- sources, store and splits ----------------------------------------------------------------
    def source_files(self) -> tuple[list[Path], str]:
        """(files, a name of the data for messages); the test file, when named, comes last."""
        if self._sources is not None:
            return self._sources
        if self.path is None:
            from mlpot.data.builtin import generate_emt_cu

            self._sources = [generate_emt_cu(**self.builtin)], "built-in EMT Cu data"
            return self._sources
        if not self.path.exists():
            raise DataPathError("data path does not exist", str(self.path))
        if self.path.is_file() and is_store_file(self.path):
            self._sources = [], str(self.path)
            return self._sources
        files = _files(self.path, self.train_file, self.pattern)
        if self.test_file:
            files = [f for f in files if f.name != self.test_file] + [_files(self.path, self.test_file, self.pattern)[0]]
        self._sources = files, str(self.path)
        return self._sources

    def open_store(self) -> FrameStore:
        if self.store is None:
            files, _ = self.source_files()
            if not files:  # data.path is a prepared store
                self.store = open_prepared(self.path)
            else:
                self.store = open_store(files, self.cache_dir, self.keys, self.format)
        return self.store

    def make_splits(self, store: FrameStore) -> dict[str, list[int]]:
        """Index lists (into the store) of train, val and test; override for other splits."""
        from mlpot.data.splits import carve_validation, split_table

        _, source = self.source_files()
        meta = store.meta()
        if self.test_file:
            test_ids = [k for k, s in enumerate(store.sources) if Path(s["path"]).name == self.test_file]
            if not test_ids:
                raise DataPathError(f"test_file '{self.test_file}' is not among the store's sources", source)
            is_test = np.isin(meta["source"], test_ids)
            rest = np.flatnonzero(~is_test).tolist()
            train, val = carve_validation(rest, self.val_fraction, self.split.get("seed", 0), source)
            return {"train": train, "val": val, "test": np.flatnonzero(is_test).tolist()}
        names = {"config_type": store.config_types, "trajectory": store.trajectories}
        cols = {c: [None if i < 0 else names[c][i] for i in meta[c].tolist()] for c in names}
        cols["step"] = [int(s) if h else None for s, h in zip(meta["step"].tolist(), meta["has_step"].tolist())]
        kw = {k: v for k, v in self.split.items() if v is not None}
        return split_table(len(store), source=source, **cols, **kw)

    def load(self) -> dict[str, np.ndarray]:
        """Open (or build) the store and split it (idempotent); infer the elements when not given."""
        if self.splits:
            return self.splits
        store = self.open_store()
        self.splits = {k: np.asarray(v, dtype=np.int64) for k, v in self.make_splits(store).items()}
        found = [chemical_symbols[z] for z in store.elements]
        if self.elements is None:
            self.elements = found
        else:
            unknown = sorted(set(found) - set(self.elements), key=lambda s: atomic_numbers[s])
            if unknown:
                k = self.first_frame_with([atomic_numbers[s] for s in unknown])
                raise UnknownElementError(
                    f"element(s) {', '.join(unknown)} in the data are missing from elements={self.elements}",
                    *store.source_of(k))
        return self.splits

    @property
    def elements_z(self) -> list[int]:
        return [atomic_numbers[s] for s in self.elements]

    def lookup(self) -> np.ndarray:
        from mlpot.data.jacobian_store import lookup_table

        return lookup_table(self.elements_z)

    def first_frame_with(self, numbers) -> int:
        """The first frame of the store holding any of the atomic numbers ``numbers``."""
        store = self.open_store()
        targets = np.asarray(numbers)
        total = int(store.offsets[-1])
        for a0 in range(0, total, 1 << 20):
            z = np.asarray(store.h5["numbers"][a0 : a0 + (1 << 20)])
            hit = np.flatnonzero(np.isin(z, targets))
            if hit.size:
                return int(np.searchsorted(store.offsets, a0 + hit[0], side="right") - 1)
        raise ValueError("no frame holds these elements")

    def atoms(self, split: str) -> list:
        """The frames of a split as ``ase.Atoms`` (all in memory: for small sets, reports and studies)."""
        store = self.open_store()
        return [store.atoms(int(k)) for k in self.load()[split]]

    def check(self) -> dict:
        """The data check (``mlpot.data.checks``): errors for data that would train a wrong model, warnings naming
        file and frame for the rest."""
        from mlpot.data.checks import check_data

        return check_data(self, self.checks)

    def check_labels(self, labels) -> None:
        """Every training/validation frame must carry the labels the loss terms need."""
        store = self.open_store()
        for stage in ("train", "val"):
            idx = self.splits[stage]
            for label in labels:
                missing = idx[~store.has(label)[idx]]
                if missing.size:
                    key = self.keys.key(label)
                    looked = f" (no key '{key}' in the frame)" if isinstance(key, str) else ""
                    raise MissingLabelError(f"no '{label}' label{looked}", *store.source_of(int(missing.min())))

    def label_counts(self, split: str) -> dict[str, int]:
        """Number of labelled items per loss quantity over a split (all ranks): energies, force components,
        stress components and atomic energies."""
        store = self.open_store()
        idx = self.splits[split]
        n_atoms = store.n_atoms[idx]
        return {"energy_per_atom": int(store.has("energy")[idx].sum()),
                "forces": int(3 * n_atoms[store.has("forces")[idx]].sum()),
                "stress": int(9 * store.has("stress")[idx].sum()),
                "atomic_energies": int(n_atoms[store.has("atomic_energies")[idx]].sum())}

    # -- statistics of the training split ---------------------------------------------------------
    def reference_energies(self) -> list[float]:
        """Per-element E0 by least squares of the training energies against composition."""
        from mlpot.data.statistics import reference_energies

        return reference_energies(self.open_store(), self.splits["train"], self.elements_z)

    def mean_atomic_energies(self, fallback) -> list[float]:
        from mlpot.data.statistics import mean_atomic_energies

        return mean_atomic_energies(self.open_store(), self.splits["train"], self.elements_z, fallback)

    # -- the force path ---------------------------------------------------------------------------
    def layout(self, descriptor):
        from mlpot.data.jacobians import probe_layout

        if self._layout is None:
            self._layout = probe_layout(descriptor)
        return self._layout

    def used_frames(self) -> np.ndarray:
        return np.unique(np.concatenate([v for v in self.load().values()]))

    def estimate_jacobian_bytes(self, descriptor, dtype, n_sample: int = 48) -> float:
        """Estimated size of the Jacobian store of the used frames (from the neighbour lists of up to
        ``n_sample`` frames spread over the data)."""
        from mlpot.data.jacobians import estimate_bytes, pair_blocks

        store = self.open_store()
        used = self.used_frames()
        sample = used[np.unique(np.linspace(0, len(used) - 1, min(n_sample, len(used))).round().astype(int))]
        layout = self.layout(descriptor)
        lookup = self.lookup()
        itemsize = torch.empty((), dtype=dtype).element_size()
        total = 0.0
        for k in sample:
            g = store.graph(int(k), lookup, descriptor.cutoff, labels=False)
            counts = torch.bincount(pair_blocks(g.species, g.edge_index, layout.n_elements), minlength=layout.n_blocks)
            total += estimate_bytes(layout, counts, int(g.n_atoms[0]), itemsize)
        return total / max(len(sample), 1) * len(used)

    def prepare(self, descriptor, dtype, kind: str = "autograd") -> None:
        """Serve batches of ``kind`` (``autograd`` or ``jacobian``; the latter builds or reuses the Jacobian
        store of every frame in the splits)."""
        if kind not in ("autograd", "jacobian"):
            raise ValueError(f"force path must be 'autograd' or 'jacobian', got {kind!r}")
        self.load()
        self.kind, self.cutoff, self.dtype = kind, float(descriptor.cutoff), dtype
        if kind == "jacobian":
            from mlpot.data.jacobian_store import open_jacobian_store

            self.jstore = open_jacobian_store(self.open_store(), self.used_frames(), descriptor, self.elements_z,
                                              self.cutoff, dtype, self.cache_dir)

    # -- descriptor scaling statistics ------------------------------------------------------------
    def scaling_statistics(self, descriptor, dtype):
        """Per-element descriptor statistics of the training split (streamed; cached on disk beside the stores,
        keyed by the frames, the training split, the descriptor and the dtype)."""
        from mlpot.data.jacobian_store import descriptor_key
        from mlpot.data.statistics import descriptor_statistics
        from mlpot.descriptors.scaling import FeatureStatistics
        from mlpot.progress import Progress

        store = self.open_store()
        train = self.splits["train"]
        key = hashlib.sha256(json.dumps([store.key, descriptor_key(descriptor, self.elements, descriptor.cutoff, dtype),
                                         hashlib.sha256(train.tobytes()).hexdigest()]).encode()).hexdigest()[:24]
        path = self.cache_dir / f"stats-{key}.json"
        if path.exists():
            try:
                return FeatureStatistics.from_dict(json.loads(path.read_text()))
            except (ValueError, KeyError, OSError):
                log.warning("%s: unreadable statistics; recomputing them", path)
        progress = Progress("descriptor statistics of the training split", total=len(train))

        def chunks():
            if self.kind == "jacobian" and self.jstore is not None:  # G as stored, 256 frames per read
                lookup = self.lookup()
                ordered = np.sort(train)
                for k0 in range(0, len(ordered), 256):
                    part = ordered[k0 : k0 + 256]
                    numbers = store.read_batch(part)["numbers"]
                    yield self.jstore.read_descriptors(part), torch.from_numpy(lookup[numbers])
                    progress.update(len(part))
                return
            loader = DataLoader(FrameDataset(store, train, self.lookup(), descriptor.cutoff, dtype),
                                batch_size=max(self.batch_size, 1), collate_fn=collate_graphs,
                                num_workers=self.num_workers)
            for b in loader:
                with torch.no_grad():
                    vec = edge_vectors(b["positions"], b["edge_index"], b["shifts"], b["cell"], b["batch"])
                    G = descriptor.from_edges(vec, b["species"], b["edge_index"])
                yield G, b["species"]
                progress.update(int(b["n_atoms"].shape[0]))

        try:
            stats = descriptor_statistics(chunks(), len(self.elements), int(descriptor.n_features))
        finally:
            progress.close()
        write_text(path, json.dumps(stats.to_dict()))
        return stats

    # -- loaders ----------------------------------------------------------------------------------
    def dataset(self, split: str):
        store, idx = self.open_store(), self.load()[split]
        if self.kind == "jacobian":
            return JacobianDataset(store, self.jstore, idx, self.lookup(), self.dtype)
        return FrameDataset(store, idx, self.lookup(), self.cutoff, self.dtype)

    def _rank(self):
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def loader(self, split: str, shuffle: bool = False, batch_size: int | None = None, rank=None, world=None):
        """Batches of a split; this process's share under DDP (training shards are padded, evaluation shards
        are not, so that every frame is evaluated exactly once)."""
        ds = self.dataset(split)
        r, w = self._rank()
        rank, world = (r if rank is None else rank), (w if world is None else world)
        sampler = EpochSampler(len(ds), shuffle, self.split.get("seed", 0), rank, world, pad=shuffle)
        if isinstance(ds, JacobianDataset):  # whole batches read at once (one call per run of consecutive frames)
            return DataLoader(ds, batch_size=None, sampler=BatchesOf(sampler, batch_size or self.batch_size),
                              collate_fn=unbatched, num_workers=self.num_workers)
        return DataLoader(ds, batch_size=batch_size or self.batch_size, sampler=sampler, collate_fn=collate_graphs,
                          num_workers=self.num_workers)

    def split_batches(self, split: str):
        """This process's batches of a split in a fixed order (full-batch L-BFGS sums them at every evaluation).
        They are kept in memory after the first pass when they take at most ``keep_in_memory_gb``, else read
        again each time."""
        if split in self._kept:
            yield from self._kept[split]
            return
        budget = float(self.keep_in_memory_gb or 0) * 1e9
        kept, size = [], 0
        for batch in self.loader(split, shuffle=False):
            if kept is not None and budget > 0:
                size += _nbytes(batch)
                kept = kept + [batch] if size <= budget else None
            yield batch
        if kept and size <= budget:
            log.info("keeping the %s split's %d batches in memory (%.2f GB <= data.keep_in_memory_gb=%g)", split,
                     len(kept), size / 1e9, self.keep_in_memory_gb)
            self._kept[split] = kept

    def hold_stores(self) -> bool:
        """Minibatch training in one process: read the frame store (and the Jacobian store) into memory once when
        together they take at most ``keep_in_memory_gb``, so that a batch costs array copies instead of HDF5
        calls (:mod:`mlpot.data.memory`). Not under DDP (each rank reads only its share) and not for full-batch
        L-BFGS (it keeps its collated batches instead, :meth:`split_batches`)."""
        if self._held:
            return True
        stores = [self.open_store()] + ([self.jstore] if self.kind == "jacobian" and self.jstore is not None else [])
        need = sum(s.data_bytes() for s in stores)
        budget = float(self.keep_in_memory_gb or 0) * 1e9
        if self._rank()[1] > 1 or need > budget:
            log.info("reading batches from the store%s (%.2f GB%s)", "s" if len(stores) > 1 else "", need / 1e9,
                     " per process under DDP" if self._rank()[1] > 1 else f" > data.keep_in_memory_gb={self.keep_in_memory_gb:g}")
            return False
        for store in stores:
            store.hold_in_memory()
        self._held = True
        log.info("holding the store%s in memory (%.2f GB <= data.keep_in_memory_gb=%g)",
                 "s" if len(stores) > 1 else "", need / 1e9, self.keep_in_memory_gb)
        return True

    def train_dataloader(self):
        if self.full_split:  # one training step per epoch; the step reads the split itself (split_batches)
            return DataLoader([{"full_split": torch.ones(1)}], batch_size=None)
        self.hold_stores()
        return self.loader("train", True)

    def val_dataloader(self):
        return self.loader("val", False)

    def test_dataloader(self):
        return self.loader("test", False)


def _nbytes(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.element_size() * batch.numel()
    if isinstance(batch, dict):
        return sum(_nbytes(v) for v in batch.values())
    if isinstance(batch, (list, tuple)):
        return sum(_nbytes(v) for v in batch)
    return 0


def _default_budget(cache_dir: Path) -> tuple[float, str]:
    """(bytes, why) of the automatic Jacobian-store budget: half the free disk at the cache folder, at most
    half the RAM (so that the store stays in the page cache)."""
    probe = cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if free / 2 < ram / 2:
        return free / 2, f"half the free disk at {cache_dir}"
    return ram / 2, "half the RAM"


def choose_force_path(dm: AtomsDataModule, descriptor, dtype, mode: str = "auto", accelerator: str = "cpu",
                      budget_gb: float | None = None) -> tuple[str, str]:
    """(``autograd`` or ``jacobian``, why) for ``training.forces=mode``: ``auto`` takes the autograd path on GPUs,
    and on CPUs the cached Jacobians when their estimated store fits the budget (``budget_gb``, default: half
    the free disk, at most half the RAM), else the autograd path."""
    if mode not in FORCE_PATHS:
        raise ValueError(f"training.forces must be one of {', '.join(FORCE_PATHS)}, got {mode!r}")
    if mode != "auto":
        return mode, f"training.forces={mode}"
    if accelerator not in ("cpu",):
        return "autograd", "the default on GPUs (training.forces=auto)"
    need = dm.estimate_jacobian_bytes(descriptor, dtype)
    if budget_gb is None:
        budget, why = _default_budget(dm.cache_dir)
    else:
        budget, why = float(budget_gb) * 1e9, "training.jacobian_budget_gb"
    n = len(dm.used_frames())
    size = f"cached pair Jacobians of {n} frames: an estimated {need / 1e9:.3g} GB"
    if need <= budget:
        return "jacobian", f"{size}, within the budget of {budget / 1e9:.3g} GB ({why})"
    return "autograd", (f"{size}, over the budget of {budget / 1e9:.3g} GB ({why}); set training.forces=jacobian "
                        "or training.jacobian_budget_gb to cache them anyway")


__all__ = ["AtomsDataModule", "choose_force_path", "is_builtin", "FORCE_PATHS"]
