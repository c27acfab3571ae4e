"""Calculators for MD and property runs, built from one config block.

``make_calculator(cfg)`` gives an ASE calculator from a ``_target_`` config, built by ``hydra.utils.instantiate``
as training builds its objects. The targets here:
- :func:`model`: an exported ``model.pt`` (:class:`MonitoredCalculator`, with the extrapolation count),
- :func:`committee`: several exported models, mean energy/forces/stress and their spread,
- :func:`eam`: ASE's EAM from a potential file (``.alloy``, ``.fs``, ``.eam``),
- :func:`n2p2`: an n2p2 potential folder (:func:`mlpot.io.n2p2.load`) with its length and energy units;
and any ASE calculator by its class (``ase.calculators.emt.EMT``, ``ase.calculators.lj.LennardJones``, ...).
Shorthand strings (``emt``, an EAM file, an n2p2 folder, a model path) and the old ``kind:`` form map to these
(:func:`calculator_config`). The runners only ever see an ASE calculator, so the references go through the same code.
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


# --- the calculators a config names by ``_target_`` ----------------------------------------------------------------
def model(path, dtype: str | None = None, device: str = "cpu", tolerance: float = 0.0, skin: float = 1.0,
          compile: bool = False) -> MonitoredCalculator:
    """An exported mlpot ``model.pt`` (or a run folder holding one), with the extrapolation monitor."""
    return MonitoredCalculator(_path(path, "model"), tolerance=float(tolerance or 0.0), dtype=dtype, device=device,
                               skin=float(skin), compile=bool(compile))


def committee(paths, dtype: str | None = None, device: str = "cpu", tolerance: float = 0.0, skin: float = 1.0,
              compile: bool = False) -> CommitteeCalculator:
    """Several exported models: mean energy/forces/stress and their spread."""
    return CommitteeCalculator([model(p, dtype, device, tolerance, skin, compile) for p in (paths or [])])


def eam(path):
    """ASE's EAM from a potential file (``.alloy``, ``.fs``, ``.eam``, ``.adp``)."""
    from ase.calculators.eam import EAM

    path = _path(path, "EAM potential")
    if not path.is_file():
        raise DataPathError("EAM potential file not found", str(path))
    return EAM(potential=str(path))


def n2p2(path, length_unit: float | str = 1.0, energy_unit: float | str = 1.0, epoch: int | None = None,
         dtype: str | None = None, device: str = "cpu", tolerance: float = 0.0, skin: float = 1.0,
         compile: bool = False) -> MonitoredCalculator:
    """An n2p2 potential folder (``input.nn``, ``scaling.data``, ``weights.NNN.data``) through
    :func:`mlpot.io.n2p2.load`; ``length_unit`` / ``energy_unit``: Å and eV per unit of the files (numbers, or
    ``bohr`` / ``hartree``; 1.0: Å and eV)."""
    from mlpot.io.n2p2 import load
    from mlpot.units import BOHR, HARTREE

    folder = _path(path, "n2p2 potential folder")
    if not (folder / "input.nn").is_file():
        raise DataPathError("n2p2 potential folder (input.nn) not found", str(folder))
    named = {"bohr": BOHR, "angstrom": 1.0, "hartree": HARTREE, "ev": 1.0}

    def unit(value, key):
        if isinstance(value, str):
            if value.lower() in named:
                return named[value.lower()]
            if not _is_number(value):
                raise SimulationConfigError(f"calculator.{key} must be a number or one of {', '.join(named)}, "
                                            f"got {value!r}")
        return float(value)

    potential = load(folder, length_unit=unit(length_unit, "length_unit"), energy_unit=unit(energy_unit, "energy_unit"),
                     epoch=epoch)
    return MonitoredCalculator(potential, tolerance=float(tolerance or 0.0), dtype=dtype, device=device,
                               skin=float(skin), compile=bool(compile))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# --- configs: the ``_target_`` form, the shorthand strings and the old ``kind:`` form --------------------------------
TARGETS = {  # the old ``kind:`` names (and the shorthands) -> their _target_
    "model": "mlpot.md.calculators.model",
    "committee": "mlpot.md.calculators.committee",
    "emt": "ase.calculators.emt.EMT",
    "eam": "mlpot.md.calculators.eam",
    "n2p2": "mlpot.md.calculators.n2p2",
}
EAM_SUFFIXES = (".alloy", ".fs", ".eam", ".adp")


def calculator_config(spec: Mapping | str | os.PathLike, key: str = "calculator") -> dict:
    """The ``_target_`` config of a calculator given as

    * a config with ``_target_`` (any ASE calculator: ``{"_target_": "ase.calculators.lj.LennardJones", "sigma": 2.3}``),
    * a shorthand string: ``emt``, an EAM file (``.alloy``, ``.fs``, ``.eam``, ``.adp``), an n2p2 folder (holding
      ``input.nn``; Å and eV), anything else an mlpot ``model.pt`` (or its run folder),
    * the old form ``{"kind": "model" | "committee" | "emt" | "eam" | "n2p2", ...}`` (mlpot <= 0.2).
    """
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec)
        if text.lower() in ("emt",):
            return {"_target_": TARGETS["emt"]}
        if text.endswith(EAM_SUFFIXES):
            return {"_target_": TARGETS["eam"], "path": text}
        if (Path(os.path.expanduser(text)) / "input.nn").is_file():
            return {"_target_": TARGETS["n2p2"], "path": text}
        if not text or text == "???":
            raise SimulationConfigError(f"{key} is not set (emt, an EAM file, an n2p2 folder, a model.pt, "
                                        f"or a config with _target_)")
        return {"_target_": TARGETS["model"], "path": text}
    if not isinstance(spec, Mapping):
        raise SimulationConfigError(f"{key}: expected a config with _target_ or a path, got {spec!r}")
    cfg = dict(spec)
    if "_target_" in cfg:
        return cfg
    if "kind" in cfg:  # the old form: same keys, kind -> _target_
        kind = str(cfg.pop("kind")).lower()
        if kind not in TARGETS:
            raise SimulationConfigError(f"{key}: unknown kind {kind!r} (choose from {', '.join(TARGETS)}, "
                                        f"or give _target_)")
        if kind == "emt":
            return {"_target_": TARGETS["emt"]}
        return {"_target_": TARGETS[kind], **cfg}
    raise SimulationConfigError(f"{key}: no _target_ (e.g. _target_: ase.calculators.emt.EMT, or "
                                f"mlpot.md.calculators.model with path: <model.pt>)")


def check_set(conf: Mapping, key: str) -> None:
    """SimulationConfigError naming the first value of ``conf`` left at ``???`` (a config's mandatory value)."""
    for name, value in conf.items():
        if isinstance(value, str) and value == "???":
            raise SimulationConfigError(f"{key}.{name} is not set ({conf.get('_target_')} needs it)")
        if isinstance(value, Mapping):
            check_set(value, f"{key}.{name}")


def make_calculator(cfg: Mapping | str, key: str = "calculator") -> Calculator:
    """An ASE calculator from a config (see :func:`calculator_config` for the forms it takes), built with
    ``hydra.utils.instantiate``. Missing or malformed model files raise :class:`~mlpot.errors.ModelFileError`
    naming the file; errors of the config name ``key``."""
    from mlpot.cli import instantiate_config

    conf = calculator_config(cfg, key)
    check_set(conf, key)
    calc = instantiate_config(conf, key)
    if not callable(getattr(calc, "get_potential_energy", None)) and not hasattr(calc, "calculate"):
        raise SimulationConfigError(f"{key}: _target_ {conf['_target_']} built a {type(calc).__name__}, "
                                    f"not an ASE calculator")
    return calc


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
