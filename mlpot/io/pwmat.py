"""PWmat ``MOVEMENT`` trajectories (ab initio MD or relaxation), docs/science.md §6.

One frame per step::

      72 atoms,Iteration (fs) = 0.1E+01, Etot,Ep,Ek (eV) = Etot Ep Ek, SCF = 6
     ... (MD_INFO and other lines that are skipped)
     Lattice vector (Angstrom)
       a1x a1y a1z     [stress (eV): W11 W12 W13]       three rows; the optional columns are the virial
     Position (normalized), move_x, move_y, move_z
       Z  fx fy fz  mx my mz                             N rows, fractional coordinates
     Force (-force, eV/Angstrom)                         N rows 'Z gx gy gz' holding −F (the energy gradient)
     Velocity (bohr/fs)                                  N rows (skipped)
     Atomic-Energy, Etot(eV),E_nonloc(eV),Q_atom:dE(eV)=  dE
       Z  E_i  E_nonloc  Q                               N rows
     --------------------------------------------        end of the frame

Labels (set with :func:`mlpot.data.frames.set_label`):

* ``energy`` = Ep (eV), the potential energy;
* ``forces`` = −(the ``Force (-force, …)`` rows), eV/Å. PWmat also writes a ``Force (eV/Angstrom)``
  header (e.g. on a trajectory's first SCF step) for the same gradient array, so both headers are
  read as −F (checked on the shared LiSi and Cu files against energy differences along the MD);
* ``atomic_energies`` = E_i + (Ep − Σ E_i)/N, so that their sum is Ep exactly. Where the file obeys
  Ep = Σ E_i + dE (the shared Cu files, to 1e-5 eV) this is the usual E_i + dE/N. The shared LiSi file
  does not: its header dE is −25200 eV while Σ E_i is within 7 meV of Ep, so adding dE/N literally
  would shift every E_i by −330 eV. The header's dE and the residual Ep − Σ E_i are kept in
  ``info['pwmat_dE']`` and ``info['pwmat_residual']``;
* ``stress`` = −W/V (eV/Å³, ASE sign) from the virial W in the ``stress (eV)`` columns, when present.

``atoms.info``: ``trajectory`` (the file name), ``step`` (frame index in the file, time order),
``time_fs`` (the Iteration value), ``mlpot_source`` / ``mlpot_frame``.

A frame that is cut short (no closing dashed line, fewer than N rows in a block) or malformed raises
:class:`MovementError` naming the file and frame; ``on_error="stop"`` instead returns the good frames
before it with a warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlpot.io.counted import open_counted
from mlpot.io.labels import set_label
from mlpot.errors import DataError, EmptyFileError, NonFiniteError

_HEADER = re.compile(r"^\s*(\d+)\s+atoms\s*,\s*Iteration", re.IGNORECASE)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][-+]?\d+)?"
_ITER = re.compile(r"Iteration\s*\(fs\)\s*=\s*(" + _NUMBER + ")", re.IGNORECASE)
_ENERGIES = re.compile(r"Etot\s*,\s*Ep\s*,\s*Ek\s*\(eV\)\s*=\s*(" + _NUMBER + r")\s+(" + _NUMBER + r")\s+(" + _NUMBER + ")",
                       re.IGNORECASE)
_DE = re.compile(r"dE\s*\(eV\)\s*=\s*(" + _NUMBER + ")", re.IGNORECASE)
_END = re.compile(r"^\s*-{5,}")


class MovementError(DataError):
    """A malformed or truncated PWmat MOVEMENT frame."""


def is_movement(path) -> bool:
    """A file whose name is, or ends with, ``MOVEMENT`` (any case)."""
    return Path(path).name.upper().endswith("MOVEMENT")


def _floats(text: str) -> float:
    return float(text.replace("D", "E").replace("d", "e"))


def _rows(lines, start: int, n: int, ncol: int, what: str, fail):
    """n rows of at least ncol numbers starting at lines[start]: (n, ncol) array."""
    if start + n > len(lines):
        fail(f"{what} block is cut short ({max(0, len(lines) - start)} of {n} rows)")
    out = np.empty((n, ncol))
    for r in range(n):
        parts = lines[start + r].split()
        if len(parts) < ncol:
            fail(f"{what} row {r + 1} has {len(parts)} columns (need {ncol})")
        try:
            out[r] = [_floats(x) for x in parts[:ncol]]
        except ValueError:
            fail(f"{what} row {r + 1} holds a value that is not a number")
    return out


def _parse_frame(lines: list[str], source: str, index: int, trajectory: str) -> Atoms:
    def fail(msg):
        raise MovementError(msg, source, index)

    head = lines[0]
    n = int(_HEADER.match(head).group(1))
    if n <= 0:
        fail("frame announces no atoms")
    m = _ENERGIES.search(head)
    if m is None:
        fail("header line has no 'Etot,Ep,Ek (eV) = ...' values")
    ep = _floats(m.group(2))
    it = _ITER.search(head)
    time_fs = _floats(it.group(1)) if it else float(index)
    closed = bool(_END.match(lines[-1]))
    if closed:
        lines = lines[:-1]
    cell = virial = frac = z = grad = e_i = d_e = None
    k = 1
    while k < len(lines):
        s = lines[k].strip()
        low = s.lower()
        if low.startswith("lattice vector"):
            rows = lines[k + 1 : k + 4]
            cell = _rows(lines, k + 1, 3, 3, "Lattice vector", fail)
            if all("stress" in r.lower() for r in rows):
                try:
                    virial = np.array([[_floats(x) for x in r.lower().split("stress (ev):")[1].split()[:3]] for r in rows])
                except (ValueError, IndexError):
                    fail("Lattice vector block has a malformed 'stress (eV):' column")
            k += 4
        elif low.startswith("position (normalized)"):
            block = _rows(lines, k + 1, n, 4, "Position", fail)
            z, frac = block[:, 0], block[:, 1:4]
            k += n + 1
        elif low.startswith("force"):
            block = _rows(lines, k + 1, n, 4, "Force", fail)
            grad = block[:, 1:4]  # both 'Force (-force, ...)' and 'Force (eV/Angstrom)' hold the gradient
            k += n + 1
        elif low.startswith("atomic-energy"):
            mde = _DE.search(s)
            if mde is None:
                fail("Atomic-Energy header has no 'dE(eV)= ...' value")
            d_e = _floats(mde.group(1))
            block = _rows(lines, k + 1, n, 2, "Atomic-Energy", fail)
            e_i = block[:, 1]
            k += n + 1
        elif low.startswith(("nonperiodic_position", "velocity")):
            _rows(lines, k + 1, n, 4, s.split()[0], fail)
            k += n + 1
        else:
            k += 1
    if not closed:
        fail("frame is truncated (no closing '-----' line)")
    for name, value in (("Lattice vector", cell), ("Position", frac), ("Force", grad)):
        if value is None:
            fail(f"frame has no '{name}' block")
    try:
        numbers = z.astype(int)
        if np.any(numbers != z) or np.any(numbers < 1) or np.any(numbers >= len(chemical_symbols)):
            raise ValueError
    except ValueError:
        fail("atomic numbers in the Position block are not valid")
    arrays = {"cell": cell, "positions": frac, "forces": grad, "Ep": np.array(ep)}
    if e_i is not None:
        arrays["atomic energies"] = e_i
    if virial is not None:
        arrays["virial"] = virial
    for name, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise NonFiniteError(f"NaN or inf in {name}", source, index)
    atoms = Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)
    if abs(atoms.cell.volume) < 1e-8:
        fail("lattice vectors span no volume")
    set_label(atoms, "energy", float(ep))
    set_label(atoms, "forces", -grad)
    if e_i is not None:  # E_i + (Ep − Σ E_i)/N: equals E_i + dE/N where Ep = Σ E_i + dE holds (see the module doc)
        residual = ep - float(e_i.sum())
        set_label(atoms, "atomic_energies", e_i + residual / n)
        atoms.info.update({"pwmat_dE": d_e, "pwmat_residual": residual})
    if virial is not None:
        set_label(atoms, "stress", -virial / atoms.cell.volume)
    atoms.info.update({"trajectory": trajectory, "step": index, "time_fs": time_fs,
                       "mlpot_source": source, "mlpot_frame": index})
    return atoms


def _blocks(lines):
    """Frames as line lists, each from its header line to (and including) its closing dashed line; lines
    before the first header are skipped. Streams: one frame in memory at a time."""
    current = None
    for line in lines:
        line = line.rstrip("\r\n")
        if _HEADER.match(line):
            if current is not None:
                yield current
            current = [line]
        elif current is not None:
            current.append(line)
            if _END.match(line):
                yield current
                current = None
    if current is not None:
        yield current


def iter_movement(path, on_error: str = "raise", position: dict | None = None):
    """The frames of one MOVEMENT file, one at a time (see the module doc and :func:`read_movement`).

    ``position``: a dict whose ``"bytes"`` is kept at the number of bytes read so far (progress)."""

    if on_error not in ("raise", "stop"):
        raise ValueError(f"on_error must be 'raise' or 'stop', got {on_error!r}")
    path = Path(path)
    source = str(path)
    if path.stat().st_size == 0:
        raise EmptyFileError("file is empty", source)
    with open_counted(path, position, errors="replace") as fh:
        first = None
        for n_line, line in enumerate(fh, start=1):
            if line.strip():
                first = (n_line, line)
                break
        if first is None:
            raise EmptyFileError("file is empty", source)
        if not _HEADER.match(first[1]):
            raise MovementError(f"line {first[0]}: not a MOVEMENT file (no 'N atoms,Iteration' header)", source)
        good = 0
        for index, block in enumerate(_blocks(_chain(first[1], fh))):
            try:
                atoms = _parse_frame(block, source, index, path.name)
            except DataError as exc:
                if on_error == "stop" and good:
                    warnings.warn(f"{exc}; keeping the {good} frame(s) before it", stacklevel=2)
                    return
                raise
            good += 1
            yield atoms


def _chain(first: str, rest):
    yield first
    yield from rest


def read_movement(path, on_error: str = "raise") -> list[Atoms]:
    """All frames of one MOVEMENT file (see the module doc).

    ``on_error``: ``"raise"`` (default) raises :class:`MovementError` at the first bad frame;
    ``"stop"`` returns the frames before it and warns (none good: the error is raised).
    """
    return list(iter_movement(path, on_error=on_error))


def read_movements(paths, on_error: str = "raise") -> list[Atoms]:
    """Frames of several MOVEMENT files, in the given order (each keeps its own ``trajectory``)."""
    out = []
    for p in [paths] if isinstance(paths, (str, Path)) else paths:
        out += read_movement(p, on_error=on_error)
    return out


__all__ = ["read_movement", "read_movements", "iter_movement", "is_movement", "MovementError"]
