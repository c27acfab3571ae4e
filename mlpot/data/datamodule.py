"""AtomsDataModule: frames → splits → cached descriptors → batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from ase.data import atomic_numbers
from torch.utils.data import DataLoader

from mlpot.data.frames import LabelKeys, get_label, read_frames, require_labels
from mlpot.errors import DataPathError, UnknownElementError
from mlpot.training.cache import collate, precompute, precompute_stored
from mlpot.training.samplers import EpochSampler


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
    """Reads frames, splits them, and serves cached batches.

    ``path``: a file or a folder (``None``: the built-in EMT Cu set, generated on first use).
    ``train_file`` / ``test_file``: names inside ``path``; with a test file, the test split is that file
    and validation is carved from the training file (``val_fraction``).
    ``cache_dir``: where descriptors and pair Jacobians are stored between runs (``None``: in memory only).
    """

    def __init__(self, path=None, train_file=None, test_file=None, pattern="*.xyz", format=None, keys=None,
                 split=None, val_fraction=0.1, batch_size=8, elements=None, num_workers=0, builtin=None,
                 cache_dir=None):
        super().__init__()
        self.path = None if is_builtin(path) else Path(path)
        self.train_file, self.test_file, self.pattern, self.format = train_file, test_file, pattern, format
        self.keys = LabelKeys(**(keys or {}))
        self.split = dict(split or {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": 0})
        self.val_fraction, self.batch_size, self.num_workers = val_fraction, batch_size, num_workers
        self.elements = list(elements) if elements else None
        self.builtin = dict(builtin or {})
        self.cache_dir = cache_dir
        self.frames: dict[str, list] = {}
        self.records: dict[str, list] = {}

    # -- frames and splits ------------------------------------------------------------------------
    def _read(self, files) -> list:
        frames = []
        for f in files:
            frames += read_frames(f, self.keys, format=self.format)
        return frames

    def load(self) -> dict[str, list]:
        """Read and split the frames (idempotent); infer the elements when not given."""
        if self.frames:
            return self.frames
        from mlpot.data.splits import carve_validation, split_frames

        if self.path is None:
            from mlpot.data.builtin import generate_emt_cu

            files, source = [generate_emt_cu(**self.builtin)], "built-in EMT Cu data"
        else:
            if not self.path.exists():
                raise DataPathError("data path does not exist", str(self.path))
            files, source = _files(self.path, self.train_file, self.pattern), str(self.path)
            if self.test_file:
                files = [f for f in files if f.name != self.test_file]
        frames = self._read(files)
        if self.test_file:
            test = self._read(_files(self.path, self.test_file, self.pattern))
            train_idx, val_idx = carve_validation(list(range(len(frames))), self.val_fraction, self.split.get("seed", 0))
            split = {"train": train_idx, "val": val_idx}
            self.frames = {k: [frames[i] for i in v] for k, v in split.items()}
            self.frames["test"] = test
        else:
            kw = {k: v for k, v in self.split.items() if v is not None}
            split = split_frames(frames, source=source, **kw)
            self.frames = {k: [frames[i] for i in split[k]] for k in ("train", "val", "test")}
        found = sorted({s for fr in self.frames.values() for a in fr for s in a.get_chemical_symbols()},
                       key=lambda s: atomic_numbers[s])
        if self.elements is None:
            self.elements = found
        else:
            for fr in self.frames.values():
                for a in fr:
                    unknown = set(a.get_chemical_symbols()) - set(self.elements)
                    if unknown:
                        raise UnknownElementError(
                            f"element(s) {', '.join(sorted(unknown))} in the data are missing from elements={self.elements}",
                            a.info.get("mlpot_source"), a.info.get("mlpot_frame"))
        return self.frames

    def check_labels(self, labels) -> None:
        """Every training/validation frame must carry the labels the loss terms need."""
        for stage in ("train", "val"):
            require_labels(self.frames[stage], labels)

    # -- statistics of the training split ---------------------------------------------------------
    def reference_energies(self) -> list[float]:
        """Per-element E0 by least squares of the training energies against composition."""
        frames = [a for a in self.frames["train"] if get_label(a, "energy") is not None]
        counts = np.array([[a.get_chemical_symbols().count(e) for e in self.elements] for a in frames], dtype=float)
        energies = np.array([get_label(a, "energy") for a in frames])
        e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
        return e0.tolist()

    # -- caches -----------------------------------------------------------------------------------
    def build_cache(self, descriptor, cutoff, dtype=torch.float32) -> None:
        todo = {stage: frames for stage, frames in self.frames.items() if stage not in self.records}
        if not self.cache_dir:
            for stage, frames in todo.items():
                self.records[stage] = precompute(descriptor, frames, self.elements, cutoff, dtype=dtype)
        elif todo:  # one store lookup for all stages
            flat = [a for frames in todo.values() for a in frames]
            records = iter(precompute_stored(descriptor, flat, self.elements, cutoff, dtype, self.cache_dir))
            self.records.update({stage: [next(records) for _ in frames] for stage, frames in todo.items()})

    def train_descriptors(self):
        """(G, species) of all training atoms, for the scaling statistics."""
        recs = self.records["train"]
        return torch.cat([r["G"] for r in recs]), torch.cat([r["species"] for r in recs])

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, stage: str, shuffle: bool):
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochSampler(len(self.records[stage]), shuffle, self.split.get("seed", 0), rank, world, pad=shuffle)
        return DataLoader(self.records[stage], batch_size=self.batch_size, sampler=sampler, collate_fn=collate,
                          num_workers=self.num_workers)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
