"""Reading labelled frames from any file ASE reads, with validation.

A frame is an ``ase.Atoms`` whose labels are normalised into ``atoms.info`` /
``atoms.arrays`` under mlpot's own names (``energy``, ``forces``, ``stress``
(3x3, eV/Å³, ASE sign), ``atomic_energies``), whatever keys the file used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mlpot.errors import (
    DataError,
    DataPathError,
    EmptyFileError,
    MissingLabelError,
    NonFiniteError,
)
from mlpot.io.counted import open_counted
from mlpot.io.labels import (  # noqa: F401  (the label convention, re-exported for mlpot.data users)
    ATOMIC_ENERGIES,
    ENERGY,
    FORCES,
    LABELS,
    STRESS,
    check_structure,
    get_label,
    set_label,
)
from mlpot.io.xsf import is_aenet_xsf, read_xsf

@dataclass
class LabelKeys:
    """Where each label lives in the file (an info/array key or an ASE calculator property)."""

    energy: str = "energy"
    forces: str = "forces"
    stress: str = "stress"
    atomic_energies: str = "energies"
    stress_unit: float = 1.0  # multiply the file's stress by this to get eV/Å³ (ASE sign)

    def __post_init__(self):
        import math

        from mlpot.errors import ConfigError

        for label in LABELS:
            if not isinstance(getattr(self, label), str) or not getattr(self, label):
                raise ConfigError(f"data.keys.{label}", f"must be the name of a key in the frames, got "
                                  f"{getattr(self, label)!r}")
        try:
            unit = float(self.stress_unit)
        except (TypeError, ValueError):
            raise ConfigError("data.keys.stress_unit", f"must be a number (eV/Å³ per unit of the file's stress), "
                              f"got {self.stress_unit!r}") from None
        if not math.isfinite(unit) or unit == 0:
            raise ConfigError("data.keys.stress_unit", f"must be a finite non-zero number, got {self.stress_unit!r}")
        self.stress_unit = unit

    def key(self, label: str) -> str:
        return getattr(self, label)


def _lookup(atoms: Atoms, key: str):
    if key in atoms.arrays:
        return atoms.arrays[key]
    if key in atoms.info:
        return atoms.info[key]
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def _as_stress(value) -> np.ndarray:
    s = np.asarray(value, dtype=np.float64).reshape(-1)
    if s.size == 9:
        return s.reshape(3, 3)
    if s.size == 6:  # Voigt xx yy zz yz xz xy
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"stress has {s.size} components (need 6 or 9)")


def normalise_labels(atoms: Atoms, keys: LabelKeys, source: str | None, frame: int | None) -> Atoms:
    """Copy the labels found under ``keys`` into mlpot's names, checking shapes and finiteness."""
    n = len(atoms)
    for label in LABELS:
        value = _lookup(atoms, keys.key(label))
        if value is None:
            continue
        try:
            if label == ENERGY:
                value = float(np.asarray(value, dtype=np.float64).reshape(()))
            elif label == STRESS:
                value = _as_stress(value) * keys.stress_unit
            else:
                value = np.asarray(value, dtype=np.float64)
                shape = (n, 3) if label == FORCES else (n,)
                value = value.reshape(shape)
        except (ValueError, TypeError) as exc:
            raise MissingLabelError(f"label '{keys.key(label)}' ({label}) is malformed: {exc}", source, frame) from None
        if not np.all(np.isfinite(value)):
            raise NonFiniteError(f"NaN or inf in label '{keys.key(label)}' ({label})", source, frame)
        set_label(atoms, label, value)
    return atoms


def require_labels(frames, labels, source: str | None = None, keys: LabelKeys | None = None) -> None:
    """Raise MissingLabelError for the first frame lacking one of ``labels``."""
    for k, atoms in enumerate(frames):
        for label in labels:
            if get_label(atoms, label) is None:
                src = atoms.info.get("mlpot_source", source)
                idx = atoms.info.get("mlpot_frame", k)
                key = getattr(keys, label, None) if keys is not None else None
                looked = f" (no key '{key}' in the frame)" if isinstance(key, str) else ""
                raise MissingLabelError(f"no '{label}' label{looked}", src, idx)


def detect_format(path: Path, format: str | None = None) -> str | None:
    """mlpot's own readers by name or content (``aenet-xsf``, ``movement``, ``n2p2``), else ``format``
    (None: ASE guesses)."""
    if format in ("aenet-xsf", "movement", "n2p2"):
        return format
    if format is not None:
        return format
    if is_aenet_xsf(path):
        return "aenet-xsf"
    if path.is_file() and path.name.upper().endswith("MOVEMENT"):
        return "movement"
    if path.name == "input.data" or path.suffix == ".data" and _looks_like_n2p2(path):
        return "n2p2"
    return None


def _looks_like_n2p2(path: Path) -> bool:
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.strip():
                    return line.split()[0] == "begin"
    except OSError:
        return False
    return False


def _raw_frames(path: Path, format: str | None, index, position: dict | None):
    """Frames as the readers give them (labels of mlpot's own readers already set)."""
    fmt = detect_format(path, format)
    if fmt == "aenet-xsf":
        yield read_xsf(path)
        if position is not None:
            position["bytes"] = path.stat().st_size
    elif fmt == "movement":
        from mlpot.io.pwmat import iter_movement  # PWmat MOVEMENT: labels set by the reader

        yield from iter_movement(path, position=position)
    elif fmt == "n2p2":
        from mlpot.io.n2p2_data import iter_input_data

        yield from iter_input_data(path, position=position)
    elif index == ":" and path.is_file():
        from ase.io.formats import filetype

        fmt = fmt or filetype(str(path), read=True)
        if fmt in ("extxyz", "xyz"):  # text formats that stream from a handle: progress by bytes
            with open_counted(path, position) as fh:
                yield from ase.io.iread(fh, index=":", format=fmt)
        else:
            yield from ase.io.iread(str(path), index=":", format=fmt)
            if position is not None:
                position["bytes"] = path.stat().st_size
    else:
        frames = ase.io.read(path, index=index, format=format)
        yield from [frames] if isinstance(frames, Atoms) else frames


def iter_frames(
    path: str | os.PathLike,
    keys: LabelKeys | None = None,
    index: str | int | slice = ":",
    format: str | None = None,
    elements=None,
    position: dict | None = None,
):
    """Labelled frames of ``path`` one at a time (any format ASE reads, extxyz first; PWmat MOVEMENT, aenet
    XSF and n2p2 ``input.data`` by mlpot's readers), validated and with labels under mlpot's names.

    Each frame records where it came from (``info['mlpot_source']``, ``info['mlpot_frame']``) so that later
    errors can name it. Memory is O(frame) for the streaming readers (extxyz, MOVEMENT, input.data).
    ``position``: a dict kept at the bytes read so far (progress)."""
    keys = keys or LabelKeys()
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise DataPathError("no such file or directory", source)
    if path.is_file() and path.stat().st_size == 0:
        raise EmptyFileError("file is empty", source)
    k = -1
    frames = _raw_frames(path, format, index, position)
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            break
        except DataError:
            raise
        except Exception as exc:  # ASE raises many types; give one line naming the file (and frame)
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"cannot be read ({type(exc).__name__}: {msg})", source, None if k < 0 else k + 1) from None
        k += 1
        if len(atoms) == 0:
            raise EmptyFileError("frame has no atoms", source, k)
        check_structure(atoms, source, k, elements)
        normalise_labels(atoms, keys, source, k)
        atoms.info["mlpot_source"] = source
        atoms.info["mlpot_frame"] = k
        yield atoms
    if k < 0:
        raise EmptyFileError("file holds no frame", source)


def read_frames(
    path: str | os.PathLike,
    keys: LabelKeys | None = None,
    index: str | int | slice = ":",
    format: str | None = None,
    require: tuple[str, ...] = (),
    elements=None,
) -> list[Atoms]:
    """Read labelled frames from ``path`` (any format ASE reads; extxyz first): :func:`iter_frames` as a list,
    then every frame must carry the labels in ``require``."""
    keys = keys or LabelKeys()
    frames = list(iter_frames(path, keys, index=index, format=format, elements=elements))
    require_labels(frames, require, str(path), keys)
    return frames
