"""Calculators for MD and property runs, built from one config block.

``make_calculator({"kind": ...})`` gives an ASE calculator for
- ``model``: an exported ``model.pt`` (:class:`MonitoredCalculator`, with the extrapolation count),
- ``committee``: several exported models, mean energy/forces/stress and their spread,
- ``emt``: ASE's EMT, ``eam``: ASE's EAM from a potential file (``.alloy``, ``.fs``, ``.eam``).
The runners only ever see an ASE calculator, so the reference potentials go through the same code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from mlpot.calculator import MLPotCalculator
from mlpot.data.frames import check_structure
from mlpot.errors import DataPathError, SimulationConfigError

KINDS = ("model", "committee", "emt", "eam")


class MonitoredCalculator(MLPotCalculator):
    """:class:`~mlpot.calculator.MLPotCalculator` that also counts extrapolating atoms.

    An atom extrapolates when one of its descriptor components leaves the training range
    ``[gmin - tol*span, gmax + tol*span]`` stored in the exported model's scaler
    (:meth:`~mlpot.descriptors.scaling.FeatureScaler.out_of_range`). After each calculation
    ``results["n_extrapolating"]`` holds the count and ``extrapolating`` the per-atom mask.
    """

    implemented_properties = [*MLPotCalculator.implemented_properties, "n_extrapolating"]

    def __init__(self, potential, tolerance: float = 0.0, **kwargs):
        super().__init__(potential, **kwargs)
        self.tolerance = float(tolerance)
        self.extrapolating = None

    def _post(self, G, species):
        # the descriptors of every evaluation come back from the model call (no second pass, no hook)
        self.extrapolating = self.potential.scaler.out_of_range(G, species, self.tolerance).cpu().numpy()

    @property
    def elements(self) -> list[str]:
        return list(self.potential.elements)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        props = [p for p in properties if p != "n_extrapolating"] or ["energy"]
        super().calculate(atoms, props, system_changes)  # checks the structure (elements when they changed)
        self.results["n_extrapolating"] = int(self.extrapolating.sum()) if self.extrapolating is not None else 0


class CommitteeCalculator(Calculator):
    """Mean of several calculators; ``energy_std`` (eV), ``forces_std`` (per atom, eV/Å, the
    norm of the per-component spread) and ``max_force_std`` give the committee's disagreement."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "energy_std", "forces_std",
                              "max_force_std", "n_extrapolating"]

    def __init__(self, members: Sequence[Calculator], **kwargs):
        super().__init__(**kwargs)
        if len(members) < 2:
            raise SimulationConfigError(f"a committee needs at least 2 models, got {len(members)}")
        self.members = list(members)

    @property
    def elements(self) -> list[str] | None:
        return getattr(self.members[0], "elements", None)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want = [p for p in ("energy", "forces", "stress", "energies") if p in properties or p in ("energy", "forces")]
        if "stress" in want and not self.atoms.pbc.all():
            want.remove("stress")
        per = {p: [] for p in want}
        n_ext = 0
        for calc in self.members:
            a = self.atoms.copy()
            a.calc = calc
            for p in want:
                per[p].append(np.asarray(a.calc.get_property(p, a), dtype=np.float64))
            n_ext = max(n_ext, int(calc.results.get("n_extrapolating", 0)))
        self.results = {p: np.mean(v, axis=0) for p, v in per.items()}
        self.results["energy"] = float(self.results["energy"])
        self.results["free_energy"] = self.results["energy"]
        self.results["energy_std"] = float(np.std(per["energy"]))
        fstd = np.linalg.norm(np.std(per["forces"], axis=0), axis=-1)
        self.results["forces_std"] = fstd
        self.results["max_force_std"] = float(fstd.max()) if len(fstd) else 0.0
        self.results["n_extrapolating"] = n_ext


def _path(value, what: str) -> Path:
    if value is None or value == "" or value == "???":
        raise SimulationConfigError(f"calculator: {what} path is not set")
    path = Path(os.path.expanduser(str(value)))
    return path


def make_calculator(cfg: Mapping | str) -> Calculator:
    """An ASE calculator from a config block (or the shorthand strings ``emt`` and a model path).

    ``{"kind": "model", "path": ..., "dtype": None, "device": "cpu", "tolerance": 0.0, "skin": 1.0, "compile": False}``
    (dtype None: the model's own; see :class:`~mlpot.calculator.MLPotCalculator` for dtype, skin and compile),
    ``{"kind": "committee", "paths": [...], ...}``, ``{"kind": "emt"}``, ``{"kind": "eam", "path": ...}``.
    Missing or malformed model files raise :class:`~mlpot.errors.ModelFileError` naming the file.
    """
    if isinstance(cfg, (str, os.PathLike)):
        text = str(cfg)
        cfg = {"kind": text.lower()} if text.lower() in ("emt",) else (
            {"kind": "eam", "path": text} if text.endswith((".alloy", ".fs", ".eam", ".adp")) else {"kind": "model", "path": text})
    kind = str(cfg.get("kind", "")).lower()
    opts = {"dtype": cfg.get("dtype"), "device": cfg.get("device", "cpu"), "skin": float(cfg.get("skin", 1.0)),
            "compile": bool(cfg.get("compile", False))}
    tol = float(cfg.get("tolerance", 0.0) or 0.0)
    if kind == "model":
        return MonitoredCalculator(_path(cfg.get("path"), "model"), tolerance=tol, **opts)
    if kind == "committee":
        paths = cfg.get("paths") or []
        return CommitteeCalculator([MonitoredCalculator(_path(p, "model"), tolerance=tol, **opts) for p in paths])
    if kind == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if kind == "eam":
        from ase.calculators.eam import EAM

        path = _path(cfg.get("path"), "EAM potential")
        if not path.is_file():
            raise DataPathError("EAM potential file not found", str(path))
        return EAM(potential=str(path))
    raise SimulationConfigError(f"calculator: unknown kind {kind!r} (choose from {', '.join(KINDS)})")


def check_elements(atoms, calculator, source: str = "structure") -> None:
    """UnknownElementError when ``atoms`` holds an element the (ML) calculator does not know."""
    elements = getattr(calculator, "elements", None)
    if elements is not None:
        check_structure(atoms, source=source, elements=elements)


def n_extrapolating(calculator) -> int | None:
    """The extrapolation count of the last calculation (None for calculators without a model)."""
    if isinstance(calculator, (MonitoredCalculator, CommitteeCalculator)):
        return int(calculator.results.get("n_extrapolating", 0))
    return None
