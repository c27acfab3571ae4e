"""The property suite: every recipe on one calculator, from a plain config dict, for fcc, bcc, hcp and
diamond crystals.

:func:`run_suite` returns ``(scalars, curves)``: ``scalars`` maps property names (``a0``, ``B``, the
elastic constants of the crystal's symmetry, ``gamma_<facet>``, ``E_vac``, ``D``, ``nve_drift``, ...) to
numbers and ``<name>_err`` to their uncertainties (one standard error; see :mod:`mlpot.evaluate.static`
and :mod:`mlpot.evaluate.dynamics`); ``curves`` holds what the plots need (E–V points and fit, RDF, MSD,
NVE energy, bond-angle histogram). Each section is skipped when its ``enabled`` is false.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import numpy as np
from ase import Atoms

from mlpot.errors import SimulationConfigError
from mlpot.evaluate.dynamics import diffusion, nve_drift
from mlpot.evaluate.static import (
    FACETS,
    SYMMETRY,
    conventional_cell,
    elastic_constants,
    equation_of_state,
    hcp_covera,
    surface_energies,
    vacancy_formation,
)
from mlpot.evaluate.structure import bond_distributions, rdf

log = logging.getLogger(__name__)

ATOMS_PER_CELL = {"fcc": 4, "bcc": 2, "diamond": 8, "hcp": 2}  # of conventional_cell

# property -> unit
UNITS = {"a0": "Å", "c_over_a": "", "B": "GPa", "E_coh": "eV/atom", "E_vac": "eV", "D": "cm^2/s",
         "nve_drift": "meV/atom/ps", "rdf_peak": "Å", "mean_bond_angle": "deg", "liquid_T": "K", "bond_cutoff": "Å",
         **{c: "GPa" for c in ("C11", "C12", "C13", "C33", "C44")},
         **{f"gamma_{f}": "J/m^2" for facets in FACETS.values() for f in facets}}


def _on(cfg: Mapping, name: str) -> dict | None:
    section = cfg.get(name)
    if not section or not section.get("enabled", True):
        return None
    return {k: v for k, v in section.items() if k != "enabled"}


def _crystal(cfg: Mapping) -> tuple[str, str, float]:
    element, crystal, a = cfg.get("element"), cfg.get("crystal"), cfg.get("a")
    for key, value in (("element", element), ("crystal", crystal), ("a", a)):
        if value in (None, "auto", "???"):
            raise SimulationConfigError(f"suite.{key} is {value!r}: resolve it first (mlpot.evaluate.crystal.resolve) "
                                        f"or give it")
    if crystal not in SYMMETRY:
        raise SimulationConfigError(f"suite.crystal must be one of {', '.join(SYMMETRY)}, got {crystal!r}")
    return str(element), str(crystal), float(a)


def first_minimum(r, g) -> float:
    """The first minimum of g(r) after its main peak (Å): the bond cutoff of a liquid."""
    r, g = np.asarray(r), np.asarray(g)
    k = int(np.argmax(g))
    after = g[k:]
    # smooth over 3 bins against noise before locating the minimum
    sm = np.convolve(after, np.ones(3) / 3, mode="same") if len(after) > 3 else after
    drops = np.flatnonzero((sm[1:-1] <= sm[:-2]) & (sm[1:-1] <= sm[2:]) & (sm[1:-1] < 0.9 * g[k]))
    return float(r[k + 1 + drops[0]]) if len(drops) else float(r[-1])


def run_suite(calculator, cfg: Mapping, liquid: Atoms | None = None, name: str = "") -> tuple[dict, dict]:
    """Run the enabled recipes of ``cfg`` with ``calculator``. ``liquid``: a melted start structure for
    the liquid section (the same for every calculator, so that only the potential differs)."""
    element, crystal, a_guess = _crystal(cfg)
    covera = cfg.get("covera")
    scalars, curves, timings = {}, {}, {}

    def timed(section, fn, *args, **kw):
        t0 = time.perf_counter()
        log.info("%s: %s ...", name, section)
        out = fn(*args, **kw)
        timings[section] = time.perf_counter() - t0
        return out

    def put(r: dict, *keys: str):
        for k in keys:
            scalars[k] = r[k]
            scalars[f"{k}_err"] = r.get(f"{k}_err", 0.0)

    a0 = a_guess
    if (o := _on(cfg, "eos")) is not None:
        if crystal == "hcp":  # the equilibrium c/a first; the EOS then scales the cell isotropically
            covera = timed("c/a", hcp_covera, element, calculator, a_guess, covera)
            scalars.update(c_over_a=covera, c_over_a_err=0.0)
        r = timed("eos", equation_of_state, conventional_cell(element, crystal, a_guess, covera), calculator,
                  crystal=crystal, covera=covera, **o)
        a0 = r.get("a0", a_guess)
        if not (math.isfinite(a0) and 0.7 * a_guess < a0 < 1.3 * a_guess):  # NaN or no minimum near the guess
            log.warning("%s: EOS gives a0 = %s; the other recipes use the guess a = %s", name, a0, a_guess)
            a0 = a_guess
        put(r, "a0", "B")
        scalars.update(E_coh=r["e0"], E_coh_err=r["e0_err"])
        curves["eos"] = {k: r[k] for k in ("volumes", "energies", "fit_volumes", "fit_energies")}
    cell = conventional_cell(element, crystal, a0, covera)
    if (o := _on(cfg, "elastic")) is not None:
        r = timed("elastic", elastic_constants, cell, calculator, crystal=crystal, **o)
        put(r, *[k for k in ("C11", "C12", "C13", "C33", "C44") if k in r])
    if (o := _on(cfg, "surfaces")) is not None:
        o = {k: v for k, v in o.items() if k != "layers"}
        r = timed("surfaces", surface_energies, cell, calculator, crystal=crystal, **o)
        put(r, *[k for k in r if k.startswith("gamma_") and not k.endswith(("_err", "_unrelaxed"))])
    if (o := _on(cfg, "vacancy")) is not None:
        repeat = tuple(o.pop("repeat", (3, 3, 3)))
        r = timed("vacancy", vacancy_formation, cell.repeat(repeat), calculator, **o)
        put(r, "E_vac")
    if (o := _on(cfg, "nve")) is not None:
        repeat = tuple(o.pop("repeat", (3, 3, 3)))
        r = timed("nve", nve_drift, cell.repeat(repeat), calculator, **o)
        put(r, "nve_drift")
        curves["nve"] = {"times_ps": r["times_ps"], "drift_per_atom": r["drift_per_atom"]}
    if (o := _on(cfg, "liquid")) is not None and liquid is not None:
        rdf_opts = dict(o.pop("rdf", {}) or {})
        bond_opts = dict(o.pop("bonds", {}) or {})
        for k in ("melt", "repeat", "volume_scale"):
            o.pop(k, None)
        r = timed("liquid", diffusion, liquid, calculator, **o)
        put(r, "D")
        curves["msd"] = {"times_fs": r["msd_times_fs"], "msd": r["msd"]}
        frames = r["frames"] or [r["final"]]
        g = rdf(frames, **rdf_opts)
        if bond_opts.get("cutoff") in (None, "auto"):
            bond_opts["cutoff"] = first_minimum(g["r"], g["g"])
        per_frame = [bond_distributions(f, **bond_opts)["mean_angle"] for f in frames]
        b = bond_distributions(frames, **bond_opts)
        dr = g["r"][1] - g["r"][0] if len(g["r"]) > 1 else 0.0
        scalars.update(
            rdf_peak=g["r_peak"], rdf_peak_err=dr,  # the bin width: the resolution of the peak position
            mean_bond_angle=b["mean_angle"],
            mean_bond_angle_err=float(np.std(per_frame, ddof=1) / math.sqrt(len(per_frame))) if len(per_frame) > 1
            else float("inf"),
            liquid_T=r["mean_temperature_K"],
            liquid_T_err=r["mean_temperature_K_err"],
            bond_cutoff=bond_opts["cutoff"], bond_cutoff_err=0.0)
        curves["rdf"] = {"r": g["r"], "g": g["g"], "g_err": g["g_err"]}
        curves["bond_angles"] = {"edges": b["angle_edges"], "density": b["angle_density"]}
    curves["timings_s"] = timings
    curves["crystal"] = {"element": element, "crystal": crystal, "a": a0, "covera": covera}
    return scalars, curves


def make_liquid(cfg: Mapping, calculator) -> Atoms | None:
    """The liquid start of the suite, melted with ``calculator`` (the reference, usually)."""
    from mlpot.md.structures import melt

    o = _on(cfg, "liquid")
    if o is None:
        return None
    element, crystal, a = _crystal(cfg)
    atoms = conventional_cell(element, crystal, a, cfg.get("covera")).repeat(tuple(o.get("repeat", (3, 3, 3))))
    m = dict(o.get("melt", {}) or {})
    return melt(atoms, calculator, temperature_K=o.get("temperature_K", 1400.0), seed=o.get("seed", 0),
                volume_scale=o.get("volume_scale"), **m)
