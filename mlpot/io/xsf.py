"""aenet's XSF structure files: ``# total energy = X eV`` header, CRYSTAL/PRIMVEC/PRIMCOORD (or ATOMS
for a molecule), atom rows ``El x y z [fx fy fz]`` in Å and eV/Å.

ASE reads the XSF geometry but takes the force columns as Hartree/Bohr and ignores the energy
comment, so aenet's files get their own reader. One structure per file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlpot.errors import DataError, EmptyFileError

_KEYWORDS = {"CRYSTAL", "PRIMVEC", "CONVVEC", "PRIMCOORD", "ATOMS"}
_ENERGY = re.compile(r"#\s*total\s+energy\s*=\s*(\S+)", re.IGNORECASE)


class XSFError(DataError):
    """A malformed aenet XSF file."""


def is_aenet_xsf(path: str | Path) -> bool:
    """True for a .xsf file whose first non-blank line is aenet's ``# total energy`` comment."""
    path = Path(path)
    if path.suffix.lower() != ".xsf" or not path.is_file():
        return False
    with open(path) as fh:
        for line in fh:
            if line.strip():
                return bool(_ENERGY.match(line.strip()))
    return False


def read_xsf(path: str | Path) -> Atoms:
    """One labelled structure: ``atoms.info['energy']`` (eV) and ``atoms.arrays['forces']`` (eV/Å)
    when present (the keys mlpot's default ``LabelKeys`` look for)."""
    source = str(path)
    lines = Path(path).read_text().splitlines()
    if not any(ln.strip() for ln in lines):
        raise EmptyFileError("file is empty", source)

    def fail(msg, k):
        raise XSFError(f"line {k + 1}: {msg}", source)

    energy, cell, rows, periodic = None, None, None, False
    k = 0
    while k < len(lines):
        s = lines[k].strip()
        m = _ENERGY.match(s)
        if m:
            try:
                energy = float(m.group(1))
            except ValueError:
                fail(f"energy '{m.group(1)}' is not a number", k)
        elif s.upper() == "CRYSTAL":
            periodic = True
        elif s.upper() == "CONVVEC":
            k += 3
        elif s.upper() == "PRIMVEC":
            try:
                cell = np.array([[float(x) for x in lines[k + n].split()[:3]] for n in (1, 2, 3)])
            except (ValueError, IndexError):
                fail("PRIMVEC needs three rows of three numbers", k)
            k += 3
        elif s.upper() in ("PRIMCOORD", "ATOMS"):
            if s.upper() == "PRIMCOORD":
                try:
                    n_atoms = int(lines[k + 1].split()[0])
                except (ValueError, IndexError):
                    fail("PRIMCOORD must be followed by the number of atoms", k + 1)
                start, end = k + 2, k + 2 + n_atoms
                if end > len(lines):
                    fail(f"PRIMCOORD announces {n_atoms} atoms but the file ends after {len(lines) - start}", k)
            else:
                start = end = k + 1
                while end < len(lines) and lines[end].strip() and lines[end].split()[0].upper() not in _KEYWORDS:
                    end += 1
            rows = []
            for n in range(start, end):
                parts = lines[n].split()
                if len(parts) not in (4, 7):
                    fail(f"atom row needs 'El x y z [fx fy fz]', got {len(parts)} columns", n)
                sym = parts[0]
                if sym.isdigit():
                    sym = chemical_symbols[int(sym)] if int(sym) < len(chemical_symbols) else sym
                if sym not in chemical_symbols[1:]:
                    fail(f"unknown element '{parts[0]}'", n)
                try:
                    rows.append((sym, [float(x) for x in parts[1:]]))
                except ValueError:
                    fail("atom row holds a value that is not a number", n)
            k = end - 1
        k += 1
    if rows is None or not rows:
        raise XSFError("no PRIMCOORD or ATOMS block", source)
    if periodic and cell is None:
        raise XSFError("CRYSTAL without PRIMVEC", source)
    widths = {len(v) for _, v in rows}
    if len(widths) != 1:
        raise XSFError("some atom rows have forces and others not", source)
    values = np.array([v for _, v in rows])
    atoms = Atoms([s for s, _ in rows], positions=values[:, :3], cell=cell if periodic else None, pbc=periodic)
    if energy is not None:
        atoms.info["energy"] = energy
    if values.shape[1] == 6:
        atoms.arrays["forces"] = values[:, 3:].copy()
    atoms.info["config_type"] = Path(path).parent.name
    return atoms


__all__ = ["read_xsf", "is_aenet_xsf", "XSFError"]
