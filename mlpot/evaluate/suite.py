"""The default property suite: every recipe on one calculator, from a plain config dict.

:func:`run_suite` returns ``(scalars, curves)``: ``scalars`` maps property names (``a0``, ``B``,
``C11``, ``C12``, ``C44``, ``gamma_100``, ``gamma_110``, ``gamma_111``, ``E_vac``, ``D``,
``nve_drift``, ...) to numbers; ``curves`` holds what the plots need (E–V, RDF, MSD, NVE energy,
bond-angle histogram). Each section is skipped when its ``enabled`` is false.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from ase import Atoms
from ase.build import bulk

from mlpot.evaluate.dynamics import diffusion, nve_drift
from mlpot.evaluate.static import elastic_constants, equation_of_state, surface_energies, vacancy_formation
from mlpot.evaluate.structure import bond_distributions, rdf

log = logging.getLogger(__name__)

ATOMS_PER_CELL = {"fcc": 4, "bcc": 2}

# property -> unit
UNITS = {"a0": "Å", "B": "GPa", "C11": "GPa", "C12": "GPa", "C44": "GPa", "gamma_100": "J/m^2",
         "gamma_110": "J/m^2", "gamma_111": "J/m^2", "E_vac": "eV", "D": "cm^2/s", "nve_drift": "meV/atom/ps",
         "rdf_peak": "Å", "mean_bond_angle": "deg", "liquid_T": "K"}


def _on(cfg: Mapping, name: str) -> dict | None:
    section = cfg.get(name)
    if not section or not section.get("enabled", True):
        return None
    return {k: v for k, v in section.items() if k != "enabled"}


def run_suite(calculator, cfg: Mapping, liquid: Atoms | None = None, name: str = "") -> tuple[dict, dict]:
    """Run the enabled recipes of ``cfg`` with ``calculator``. ``liquid``: a melted start structure for
    the liquid section (the same for every calculator, so that only the potential differs)."""
    element, crystal = cfg.get("element", "Cu"), cfg.get("crystal", "fcc")
    a_guess = float(cfg.get("a", 3.6))
    scalars, curves, timings = {}, {}, {}

    def timed(section, fn, *args, **kw):
        t0 = time.perf_counter()
        log.info("%s: %s ...", name, section)
        out = fn(*args, **kw)
        timings[section] = time.perf_counter() - t0
        return out

    a0 = a_guess
    if (o := _on(cfg, "eos")) is not None:
        r = timed("eos", equation_of_state, bulk(element, crystal, a=a_guess, cubic=True), calculator,
                  atoms_per_cell=ATOMS_PER_CELL.get(crystal), **o)
        a0 = r.get("a0", a_guess)
        if not (a0 == a0 and 0.7 * a_guess < a0 < 1.3 * a_guess):  # NaN or no minimum near the guess
            log.warning("%s: EOS gives a0 = %s; the other recipes use the guess a = %s", name, a0, a_guess)
            a0 = a_guess
        scalars.update(a0=r.get("a0", a0), B=r["B"])
        curves["eos"] = {"volumes": r["volumes"], "energies": r["energies"]}
    cell = bulk(element, crystal, a=a0, cubic=True)
    if (o := _on(cfg, "elastic")) is not None:
        r = timed("elastic", elastic_constants, cell, calculator, **o)
        scalars.update(C11=r["C11"], C12=r["C12"], C44=r["C44"])
    if (o := _on(cfg, "surfaces")) is not None:
        r = timed("surfaces", surface_energies, element, calculator, a0, crystal=crystal, **o)
        scalars.update({k: v for k, v in r.items() if k.startswith("gamma_") and not k.endswith("unrelaxed")})
    if (o := _on(cfg, "vacancy")) is not None:
        repeat = tuple(o.pop("repeat", (3, 3, 3)))
        r = timed("vacancy", vacancy_formation, cell.repeat(repeat), calculator, **o)
        scalars["E_vac"] = r["E_vac"]
    if (o := _on(cfg, "nve")) is not None:
        repeat = tuple(o.pop("repeat", (3, 3, 3)))
        r = timed("nve", nve_drift, cell.repeat(repeat), calculator, **o)
        scalars["nve_drift"] = r["nve_drift"]
        curves["nve"] = {"times_ps": r["times_ps"], "etot_per_atom": r["etot_per_atom"]}
    if (o := _on(cfg, "liquid")) is not None and liquid is not None:
        rdf_opts = dict(o.pop("rdf", {}) or {})
        bond_opts = dict(o.pop("bonds", {}) or {})
        o.pop("melt", None)
        o.pop("repeat", None)
        o.pop("volume_scale", None)
        r = timed("liquid", diffusion, liquid, calculator, **o)
        scalars.update(D=r["D"], liquid_T=r["mean_temperature_K"])
        curves["msd"] = {"times_fs": r["msd_times_fs"], "msd": r["msd"]}
        frames = r["frames"] or [r["final"]]
        g = rdf(frames, **rdf_opts)
        b = bond_distributions(frames, **bond_opts)
        scalars.update(rdf_peak=g["r_peak"], mean_bond_angle=b["mean_angle"])
        curves["rdf"] = {"r": g["r"], "g": g["g"]}
        curves["bond_angles"] = {"edges": b["angle_edges"], "density": b["angle_density"]}
    curves["timings_s"] = timings
    return scalars, curves


def make_liquid(cfg: Mapping, calculator) -> Atoms | None:
    """The liquid start of the suite, melted with ``calculator`` (the reference, usually)."""
    from mlpot.md.structures import melt

    o = _on(cfg, "liquid")
    if o is None:
        return None
    element, crystal = cfg.get("element", "Cu"), cfg.get("crystal", "fcc")
    atoms = bulk(element, crystal, a=float(cfg.get("a", 3.6)), cubic=True).repeat(tuple(o.get("repeat", (3, 3, 3))))
    m = dict(o.get("melt", {}) or {})
    return melt(atoms, calculator, temperature_K=o.get("temperature_K", 1400.0), seed=o.get("seed", 0),
                volume_scale=o.get("volume_scale"), **m)
