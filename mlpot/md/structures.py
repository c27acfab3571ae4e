"""Starting structures from one config block: a file, a bulk supercell, a surface slab, a liquid.

``make_structure({"kind": "bulk", "element": "Cu", "crystal": "fcc", "a": 3.59, "repeat": [3, 3, 3]})``;
``kind: file`` reads ``path`` (``index``, default the last frame) with ASE; ``kind: surface`` builds
an fcc/bcc/hcp slab with ``ase.build`` (``miller`` "100", "110", "111", ``size``, ``vacuum``);
``kind: liquid`` is a bulk supercell that :func:`melt` turns into a liquid with the run's calculator.
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


def make_structure(cfg: Mapping) -> Atoms:
    """Build the structure of ``cfg`` (a liquid comes out as its crystalline start: see :func:`melt`)."""
    kind = str(cfg.get("kind", "bulk")).lower()
    if kind == "file":
        path = cfg.get("path")
        if not path:
            raise SimulationConfigError("structure: 'path' is not set")
        if not Path(path).is_file():
            raise DataPathError("structure file not found", str(path))
        return ase.io.read(path, index=cfg.get("index", -1))
    element, crystal = cfg.get("element", "Cu"), cfg.get("crystal", "fcc")
    a = cfg.get("a")
    if kind in ("bulk", "liquid"):
        atoms = bulk(element, crystal, a=a, cubic=bool(cfg.get("cubic", True)))
        return atoms.repeat(tuple(cfg.get("repeat", (3, 3, 3))))
    if kind == "surface":
        from ase import build as ase_build

        name = SURFACES.get((crystal, str(cfg.get("miller", "111"))))
        if name is None:
            raise SimulationConfigError(f"structure: no surface builder for {crystal} ({cfg.get('miller')})")
        builder = getattr(ase_build, name)
        return builder(element, size=tuple(cfg.get("size", (3, 3, 6))), a=a, vacuum=float(cfg.get("vacuum", 10.0)),
                       periodic=True)
    raise SimulationConfigError(f"structure: unknown kind {kind!r} (choose from file, bulk, surface, liquid)")


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
