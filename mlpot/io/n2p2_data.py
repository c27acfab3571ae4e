"""n2p2's training data file, ``input.data`` (begin/lattice/atom/energy/charge/end blocks), read one structure at
a time into ``ase.Atoms`` with mlpot's labels (``mlpot.io.labels``); the n2p2 potential itself is read by
``mlpot.io.n2p2``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from mlpot.errors import DataError, DataPathError, EmptyFileError, NonFiniteError
from mlpot.io.counted import open_counted
from mlpot.io.labels import ENERGY, FORCES, check_structure, set_label

_ATOM_RE = re.compile(r"^atom$")


def read_input_data(path, length_unit: float = 1.0, energy_unit: float = 1.0) -> list[Atoms]:
    """Structures of an n2p2 ``input.data`` file (positions, forces, energy) in Å and eV."""
    return list(iter_input_data(path, length_unit, energy_unit))


def iter_input_data(path, length_unit: float = 1.0, energy_unit: float = 1.0, position: dict | None = None):
    """The structures of an n2p2 ``input.data`` file one at a time (:func:`read_input_data`).

    ``position``: a dict whose ``"bytes"`` is kept at the number of bytes read so far (progress)."""
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise DataPathError("no such file or directory", src)
    if not path.is_file() or path.stat().st_size == 0:
        raise EmptyFileError("file is empty or not a file", src)
    n_frames, cur = 0, None
    with open_counted(path, position) as fh:
        try:
            for n, raw in enumerate(fh, start=1):
                cur, done = _input_data_line(raw, n, cur, src, n_frames, length_unit, energy_unit,
                                             (ENERGY, FORCES, check_structure, set_label))
                if done is not None:
                    n_frames += 1
                    yield done
        except UnicodeDecodeError:
            raise DataError("not a text file", src) from None
    if cur is not None:
        raise DataError("structure not closed by 'end'", src, n_frames)
    if not n_frames:
        raise EmptyFileError("file holds no structure", src)


def _input_data_line(raw, n, cur, src, index, length_unit, energy_unit, helpers):
    """One line of input.data: returns the structure being read and, at its 'end', the finished Atoms."""
    ENERGY, FORCES, check_structure, set_label = helpers
    tok = raw.split()
    if not tok:
        return cur, None
    key = tok[0]
    try:
        if key == "begin":
            if cur is not None:
                raise DataError(f"line {n}: 'begin' before the 'end' of the previous structure", src, index)
            return {"lattice": [], "pos": [], "sym": [], "forces": [], "energy": None, "comment": ""}, None
        if cur is None:
            raise DataError(f"line {n}: '{key}' outside begin/end", src, index)
        if key == "comment":
            cur["comment"] = raw.split(None, 1)[1].rstrip("\r\n") if len(tok) > 1 else ""
        elif key == "lattice":
            if len(tok) < 4:
                raise ValueError
            cur["lattice"].append([float(t) for t in tok[1:4]])
        elif key == "atom":
            if len(tok) < 10:
                raise ValueError
            if tok[4] not in atomic_numbers:
                raise DataError(f"line {n}: unknown element '{tok[4]}'", src, index)
            cur["pos"].append([float(t) for t in tok[1:4]])
            cur["sym"].append(tok[4])
            cur["forces"].append([float(t) for t in tok[7:10]])
        elif key == "energy":
            cur["energy"] = float(tok[1])
        elif key == "end":
            if len(cur["lattice"]) not in (0, 3):
                raise DataError(f"line {n}: {len(cur['lattice'])} lattice lines (need 0 or 3)", src, index)
            pbc = len(cur["lattice"]) == 3
            atoms = Atoms(
                cur["sym"], positions=np.array(cur["pos"]) * length_unit,
                cell=np.array(cur["lattice"]) * length_unit if pbc else None, pbc=pbc,
            )
            atoms.info["comment"] = cur["comment"]
            check_structure(atoms, src, index)
            labels = [cur["forces"]] if cur["energy"] is None else [cur["forces"], cur["energy"]]
            if not all(np.all(np.isfinite(v)) for v in labels):
                raise NonFiniteError("NaN or inf in the energy or forces", src, index)
            if cur["energy"] is not None:
                set_label(atoms, ENERGY, cur["energy"] * energy_unit)
            set_label(atoms, FORCES, np.array(cur["forces"]) * energy_unit / length_unit)
            atoms.info.update(mlpot_source=src, mlpot_frame=index)
            return None, atoms
    except DataError:
        raise
    except (ValueError, IndexError):
        raise DataError(f"line {n}: malformed '{key}' line", src, index) from None
    return cur, None


def write_input_data(path, frames, length_unit: float = 1.0, energy_unit: float = 1.0) -> Path:
    """Write structures (``ase.Atoms`` or a list) as n2p2's ``input.data``, positions and cell in units of
    ``length_unit`` Å, energies in units of ``energy_unit`` eV (the reverse of :func:`read_input_data`).

    Energy and forces come from mlpot's labels when a frame has them, else 0 (n2p2 needs the fields);
    charges are 0. Non-periodic frames get no lattice lines; periodicity in only some directions is refused
    (n2p2 knows fully periodic or free structures only). Numbers are written with 17 significant digits."""
    from ase import Atoms as _Atoms

    from mlpot.files import write_text
    from mlpot.io.labels import get_label

    frames = [frames] if isinstance(frames, _Atoms) else list(frames)
    out = []
    for index, atoms in enumerate(frames):
        pbc = atoms.pbc
        if pbc.any() and not pbc.all():
            raise DataError(f"n2p2 input.data needs a fully periodic or a free structure, got pbc={pbc.tolist()}",
                            str(path), index)
        energy = get_label(atoms, ENERGY)
        forces = get_label(atoms, FORCES)
        energy = 0.0 if energy is None else float(energy) / energy_unit
        forces = np.zeros((len(atoms), 3)) if forces is None else np.asarray(forces, float) * length_unit / energy_unit
        if forces.shape != (len(atoms), 3):
            raise DataError(f"forces label of shape {forces.shape} for {len(atoms)} atoms (a stale label, e.g. after "
                            f"Atoms.repeat?)", str(path), index)
        out.append("begin")
        comment = str(atoms.info.get("comment", "")).replace("\n", " ").strip()
        if comment:
            out.append(f"comment {comment}")
        if pbc.all():
            for v in atoms.cell.array / length_unit:
                out.append("lattice " + " ".join(f"{x: .17e}" for x in v))
        for sym, r, f in zip(atoms.get_chemical_symbols(), atoms.positions / length_unit, forces):
            out.append("atom " + " ".join(f"{x: .17e}" for x in r) + f" {sym} 0.0 0.0 "
                       + " ".join(f"{x: .17e}" for x in f))
        out.append(f"energy {energy: .17e}")
        out.append("charge 0.0")
        out.append("end")
    return write_text(path, "\n".join(out) + "\n")


__all__ = ["read_input_data", "iter_input_data", "write_input_data"]
