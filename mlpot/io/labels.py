"""The label convention of mlpot's frames: a reader (``mlpot/io/``, ``mlpot/data/frames.py``) stores each label of
an ``ase.Atoms`` under ``atoms.info["mlpot_<label>"]``, in eV, eV/Å and eV/Å³, and checks the structure it made.
Readers of file formats depend on this module alone, so that ``mlpot/data/`` can dispatch to them."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlpot.errors import NonFiniteError, UnknownElementError

# mlpot's canonical label names
ENERGY, FORCES, STRESS, ATOMIC_ENERGIES = "energy", "forces", "stress", "atomic_energies"
LABELS = (ENERGY, FORCES, STRESS, ATOMIC_ENERGIES)
_INFO_PREFIX = "mlpot_"  # labels are stored as atoms.info["mlpot_energy"] etc.


def get_label(atoms: Atoms, label: str):
    """The normalised label of a frame read by :func:`read_frames`, or None."""
    return atoms.info.get(_INFO_PREFIX + label)


def set_label(atoms: Atoms, label: str, value) -> None:
    atoms.info[_INFO_PREFIX + label] = value


def check_structure(atoms: Atoms, source: str | None = None, frame: int | None = None, elements=None) -> None:
    """Finite positions and cell; known elements (when ``elements`` is given)."""
    if not np.all(np.isfinite(atoms.positions)):
        raise NonFiniteError("NaN or inf in positions", source, frame)
    if not np.all(np.isfinite(atoms.cell.array)):
        raise NonFiniteError("NaN or inf in the cell", source, frame)
    if elements is not None:
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
        if unknown:
            raise UnknownElementError(
                f"element(s) {', '.join(unknown)} not among the known elements {list(elements)}", source, frame
            )


__all__ = ["ENERGY", "FORCES", "STRESS", "ATOMIC_ENERGIES", "LABELS", "get_label", "set_label", "check_structure"]
