"""Starting structures from one config block: a file, a bulk supercell, a surface slab, a liquid.

``make_structure({"_target_": "mlpot.md.structures.bulk_supercell", "element": "Cu", "a": 3.59, "repeat": [3, 3, 3]})``
(built by ``hydra.utils.instantiate``, as training builds its objects): :func:`read_structure` reads a file
(``index``, default the last frame) with ASE; :func:`surface_slab` builds an fcc/bcc/hcp slab with ``ase.build``;
any function returning ``ase.Atoms`` works as ``_target_``. A config with a ``melt`` block is melted by the app
with the run's calculator (:func:`melt`) before the run: a liquid. The old ``kind:`` form maps to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.constraints import FixAtoms

from mlpot.errors import DataPathError, SimulationConfigError

SURFACES = {
    ("fcc", "100"): "fcc100", ("fcc", "110"): "fcc110", ("fcc", "111"): "fcc111",
    ("bcc", "100"): "bcc100", ("bcc", "110"): "bcc110", ("bcc", "111"): "bcc111",
    ("hcp", "0001"): "hcp0001",
}


def read_structure(path, index: int | str = -1) -> Atoms:
    """A frame of a structure file (any format ASE reads; ``index``: default the last frame)."""
    if not path or path == "???":
        raise SimulationConfigError("structure: 'path' is not set")
    if not Path(path).is_file():
        raise DataPathError("structure file not found", str(path))
    return ase.io.read(path, index=index)


def bulk_supercell(element: str = "Cu", crystal: str = "fcc", a: float | None = None, cubic: bool = True,
                   repeat=(3, 3, 3)) -> Atoms:
    """A bulk crystal (``ase.build.bulk``) repeated ``repeat`` times."""
    atoms = bulk(element, crystal, a=a, cubic=bool(cubic))
    return atoms.repeat(tuple(repeat))


def surface_slab(element: str = "Cu", crystal: str = "fcc", a: float | None = None, miller: str = "111",
                 size=(3, 3, 6), vacuum: float = 10.0) -> Atoms:
    """An fcc/bcc/hcp slab from ``ase.build`` (``miller`` "100", "110", "111" or "0001"), periodic in all three
    directions with ``vacuum`` Å on each side."""
    from ase import build as ase_build

    name = SURFACES.get((crystal, str(miller)))
    if name is None:
        raise SimulationConfigError(f"structure: no surface builder for {crystal} ({miller})")
    return getattr(ase_build, name)(element, size=tuple(size), a=a, vacuum=float(vacuum), periodic=True)


TARGETS = {"file": "mlpot.md.structures.read_structure", "bulk": "mlpot.md.structures.bulk_supercell",
           "liquid": "mlpot.md.structures.bulk_supercell", "surface": "mlpot.md.structures.surface_slab"}
NOT_BUILDER_KEYS = ("melt",)  # keys of a structure config for the app, not for its _target_


def structure_config(spec: Mapping | str) -> dict:
    """The ``_target_`` config of a structure: a config with ``_target_`` (any function returning ``ase.Atoms``,
    e.g. ``ase.build.bulk``), a file path, or the old ``{"kind": "file" | "bulk" | "surface" | "liquid", ...}``.
    ``melt`` (see :func:`melt`) stays in the config: the app melts the structure before the run."""
    if isinstance(spec, str):
        return {"_target_": TARGETS["file"], "path": spec}
    cfg = dict(spec)
    if "_target_" in cfg:
        return cfg
    kind = str(cfg.pop("kind", "bulk")).lower()
    if kind not in TARGETS:
        raise SimulationConfigError(f"structure: unknown kind {kind!r} (choose from file, bulk, surface, liquid, "
                                    f"or give _target_)")
    if kind == "liquid":
        cfg.setdefault("melt", {})
    return {"_target_": TARGETS[kind], **cfg}


def make_structure(cfg: Mapping | str) -> Atoms:
    """Build the structure of ``cfg`` (see :func:`structure_config`; a liquid comes out as its crystalline start:
    the app melts it, :func:`melt`)."""
    from mlpot.cli import instantiate_config
    from mlpot.md.calculators import check_set

    conf = {k: v for k, v in structure_config(cfg).items() if k not in NOT_BUILDER_KEYS}
    check_set(conf, "structure")
    atoms = instantiate_config(conf, "structure")
    if not isinstance(atoms, Atoms):
        raise SimulationConfigError(f"structure: _target_ {conf['_target_']} built a {type(atoms).__name__}, "
                                    f"not ase.Atoms")
    return atoms


def region_mask(atoms: Atoms, axis: int = 2, lo: float = 0.0, hi: float = 1.0, scaled: bool = True) -> np.ndarray:
    """True for atoms with lo <= coordinate < hi along ``axis`` (fractional when ``scaled``)."""
    x = atoms.get_scaled_positions(wrap=True)[:, axis] if scaled else atoms.positions[:, axis]
    return (x >= lo) & (x < hi)


def fix_atoms(atoms: Atoms, cfg: Mapping | None) -> np.ndarray:
    """Add an ASE FixAtoms constraint from ``{"indices": [...]} `` or ``{"region": {axis, lo, hi, scaled}}``;
    returns the mask of fixed atoms (all False without a config)."""
    mask = np.zeros(len(atoms), dtype=bool)
    if not cfg:
        return mask
    if cfg.get("indices") is not None:
        mask[np.asarray(cfg["indices"], dtype=int)] = True
    if cfg.get("mask") is not None:
        mask |= np.asarray(cfg["mask"], dtype=bool)
    if cfg.get("region"):
        mask |= region_mask(atoms, **dict(cfg["region"]))
    if mask.any():
        atoms.set_constraint(FixAtoms(mask=mask))
    return mask


def melt(atoms: Atoms, calculator, temperature_K: float = 1400.0, heat_temperature_K: float = 3000.0,
         heat_steps: int = 500, equil_steps: int = 250, timestep_fs: float = 4.0, friction_per_fs: float = 0.01,
         seed: int = 0, volume_scale: float | None = None) -> Atoms:
    """A liquid from a crystal: Langevin at ``heat_temperature_K`` then ``temperature_K`` (ASE's integrator).

    ``volume_scale`` (e.g. 1.17 for EMT Cu, the built-in data's 3.7872/3.5898 cubed) expands the cell
    first, to the liquid's density. Returns the melted ``atoms`` (moved in place, velocities kept).
    """
    from ase.md.langevin import Langevin

    from mlpot.md.runner import thermalize

    if volume_scale:
        atoms.set_cell(atoms.cell * float(volume_scale) ** (1 / 3), scale_atoms=True)
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize(atoms, heat_temperature_K, rng)
    friction = friction_per_fs / units.fs
    for t, n in ((heat_temperature_K, heat_steps), (temperature_K, equil_steps)):
        if n:
            Langevin(atoms, timestep_fs * units.fs, temperature_K=t, friction=friction, fixcm=False, rng=rng).run(n)
    return atoms
