"""ASE calculator over a :class:`~mlpot.Potential` (or an exported model file)."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from mlpot.data.graph import atoms_to_graph

_DTYPES = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32, torch.float64: torch.float64}


class MLPotCalculator(Calculator):
    """energy, free_energy, energies (per atom), forces, stress (eV, eV/Å, eV/Å³, ASE order).

    The potential is copied to ``device``/``dtype``; the caller's object and
    torch's global state (default dtype, grad mode) are left untouched. ``threads``: None leaves torch's thread
    count as it is; ``"auto"`` sets it as the apps do (the cores no other program is busy on,
    ``mlpot.system.set_threads``: on a 2-core machine with one other busy process, torch's default of 2 threads
    made a 256-atom call ~20x slower than 1); an integer sets that many (torch's setting is process-wide).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential, device: str = "cpu", dtype: str = "float64", threads=None, **kwargs):
        super().__init__(**kwargs)
        if threads is not None:
            from mlpot.system import set_threads

            set_threads(None if threads == "auto" else threads)
        if isinstance(potential, (str, os.PathLike)):
            from mlpot.export import load  # exported model file

            potential = load(potential)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = _DTYPES[dtype]
        self.device = torch.device(device)
        self.potential = copy.deepcopy(potential).to(device=self.device, dtype=self.dtype).eval()
        for p in self.potential.parameters():
            p.requires_grad_(False)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        graph = atoms_to_graph(self.atoms, self.potential.elements, self.potential.cutoff, dtype=self.dtype,
                               with_labels=False).to(self.device)
        with torch.enable_grad():
            out = self.potential(graph, forces=True, stress=want_stress)
        energy = float(out["energy"].detach().sum().cpu())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energies"].detach().cpu().numpy().astype(np.float64),
            "forces": out["forces"].detach().cpu().numpy().astype(np.float64),
        }
        if want_stress:
            s = out["stress"].detach().cpu().numpy()[0].astype(np.float64)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
