"""Static property recipes: ``(atoms, calculator, **options) -> dict`` (energies in eV, lengths in Å).

Every scalar comes with an uncertainty ``<name>_err`` (one standard error):

- :func:`relax_cell`: the crystal's equilibrium cell (positions and cell shape, ASE's ``FrechetCellFilter``).
- :func:`equation_of_state`: E(V) over isotropic strains, fitted by a Birch–Murnaghan curve
  (ASE's functional form, scipy's least squares) → v0, e0, B, B' and a0 with the fit's standard errors.
- :func:`elastic_constants`: the elastic tensor for the crystal's symmetry from matscipy's
  stress–strain regression (``matscipy.elasticity.fit_elastic_constants``), with its standard errors.
- :func:`surface_energies`: γ = (E_slab − N e_bulk) / (2A) for relaxed slabs of ``ase.build.surface``.
- :func:`vacancy_formation`: E_vac = E(N−1, relaxed) − (N−1)/N E(N) in a supercell (ASE optimiser).

Relaxed energies are deterministic (no statistical error); their ``_err`` is the energy change over the
optimiser's last step (the whole relaxation energy when it hit its step limit), an estimate of how far
the relaxation is from its minimum (0 for an unrelaxed energy). Every recipe works on a copy; the caller's atoms are left unchanged.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units
from ase import eos as ase_eos
from ase.build import bulk

from mlpot.errors import SimulationConfigError

EV_PER_A2_TO_J_PER_M2 = units._e * 1e20  # 1 eV/Å² = 16.02 J/m²
SJ_EOS = "sj" if "sj" in getattr(ase_eos, "eos_names", ()) else "sjeos"  # renamed in ASE 3.29

# matscipy's symmetry name of each crystal, and the independent constants reported
SYMMETRY = {"fcc": "cubic", "bcc": "cubic", "diamond": "cubic", "hcp": "hexagonal"}
INDEPENDENT = {"cubic": ("C11", "C12", "C44"), "hexagonal": ("C11", "C12", "C13", "C33", "C44")}
# low-index facets (Miller indices of the conventional cell; hcp in 3-index form of the hexagonal cell)
FACETS = {"fcc": ("100", "110", "111"), "bcc": ("100", "110", "111"), "diamond": ("100", "110", "111"),
          "hcp": ("0001", "10-10")}
HCP_3INDEX = {"0001": (0, 0, 1), "10-10": (1, 0, 0), "11-20": (1, 1, 0)}


def _energy(atoms: Atoms, calculator) -> float:
    a = atoms.copy()
    a.calc = calculator
    return float(a.get_potential_energy())


def _relax(atoms: Atoms, calculator, fmax: float, steps: int, optimizer: str = "BFGS",
           last: int = 1) -> tuple[float, int, float]:
    """Relax positions (fixed cell) with an ASE optimiser; returns (energy, number of steps, energy change
    over the last ``last`` steps: the uncertainty of the relaxed energy, 0 if it converged at once).
    For a converging optimiser the last step's energy change bounds the distance to the minimum from above."""
    import ase.optimize

    atoms.calc = calculator
    energies = [float(atoms.get_potential_energy())]
    opt = getattr(ase.optimize, optimizer)(atoms, logfile=None)
    opt.attach(lambda: energies.append(float(atoms.get_potential_energy())), interval=1)
    opt.run(fmax=fmax, steps=steps)
    e = float(atoms.get_potential_energy())
    tail = energies[-(last + 1):]
    return e, int(opt.nsteps), float(max(tail) - min(tail))


def conventional_cell(element: str, crystal: str, a: float, covera: float | None = None) -> Atoms:
    """The conventional cell of ``crystal`` (cubic for fcc, bcc, diamond; the 2-atom hexagonal cell for hcp)."""
    if crystal not in SYMMETRY:
        raise SimulationConfigError(f"crystal must be one of {', '.join(SYMMETRY)}, got {crystal!r}")
    if crystal == "hcp":
        return bulk(element, "hcp", a=a, covera=covera or math.sqrt(8 / 3))
    return bulk(element, crystal, a=a, cubic=True)


def lattice_constant(crystal: str, volume_per_atom: float, covera: float | None = None) -> float:
    """The lattice constant a (Å) of ``crystal`` with the given volume per atom."""
    if crystal == "hcp":  # V/atom = (√3/4) a³ c/a
        return float((4 * volume_per_atom / (math.sqrt(3) * (covera or math.sqrt(8 / 3)))) ** (1 / 3))
    return float((volume_per_atom * {"fcc": 4, "bcc": 2, "diamond": 8}[crystal]) ** (1 / 3))


def relax_cell(atoms: Atoms, calculator, fmax: float = 1e-3, steps: int = 300) -> Atoms:
    """``atoms`` with positions and cell relaxed to zero stress (BFGS on ASE's ``FrechetCellFilter``)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = calculator
    BFGS(FrechetCellFilter(a), logfile=None).run(fmax=fmax, steps=steps)
    a.calc = None
    return a


def hcp_covera(element: str, calculator, a: float, covera: float | None = None, fmax: float = 1e-3) -> float:
    """The equilibrium c/a of the hcp crystal (cell relaxed by :func:`relax_cell`; by symmetry it stays
    hexagonal, and the ideal cell is rebuilt from its a and c since ``ase.build.surface`` needs exact
    lattice vectors)."""
    lengths = relax_cell(conventional_cell(element, "hcp", a, covera), calculator, fmax=fmax).cell.lengths()
    return float(lengths[2] / (0.5 * (lengths[0] + lengths[1])))


def equation_of_state(atoms: Atoms, calculator, strain: float = 0.02, n_points: int = 9,
                      crystal: str | None = None, covera: float | None = None, **_ignored) -> dict:
    """E(V) for isotropic lattice scalings 1 ± ``strain`` (``n_points`` points), fitted by the
    Birch–Murnaghan equation of state (``ase.eos.birchmurnaghan``) with ``scipy.optimize.curve_fit``.

    Returns ``v0`` (Å³/atom), ``e0`` (eV/atom), ``B`` (GPa), ``Bp`` and their standard errors
    (``*_err``, from the fit's covariance), the points (``volumes``, ``energies`` per atom), the fitted
    curve (``fit_volumes``, ``fit_energies``) and, given ``crystal``, the lattice constant ``a0`` (Å) ± error.
    """
    from ase.eos import EquationOfState, birchmurnaghan
    from scipy.optimize import curve_fit

    if n_points < 5:
        raise SimulationConfigError(f"equation_of_state: n_points must be >= 5, got {n_points}")
    n = len(atoms)
    volumes, energies = [], []
    for s in np.linspace(1 - strain, 1 + strain, n_points):
        a = atoms.copy()
        a.set_cell(atoms.cell * s, scale_atoms=True)
        volumes.append(a.get_volume() / n)
        energies.append(_energy(a, calculator) / n)
    v, e = np.asarray(volumes), np.asarray(energies)
    # starting point: a parabola (ASE's own fit may fail far from a well)
    c2, c1, c0 = np.polyfit(v, e, 2)
    v_guess = -c1 / (2 * c2) if c2 > 0 else v[np.argmin(e)]
    p0 = [float(np.polyval([c2, c1, c0], v_guess)), float(2 * c2 * v_guess) if c2 > 0 else 0.5, 4.0, float(v_guess)]
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            p, cov = curve_fit(birchmurnaghan, v, e, p0=p0, maxfev=20000)
        err = np.sqrt(np.clip(np.diag(cov), 0, None)) if np.all(np.isfinite(cov)) else np.full(4, np.inf)
    except (RuntimeError, ValueError):  # no convergence (E(V) far from a well): ASE's linear SJ fit, no error
        v0, e0, b = EquationOfState(v, e, eos=SJ_EOS).fit()
        p, err = np.array([e0, b, np.nan, v0]), np.full(4, np.inf)
    e0, b0, bp, v0 = (float(x) for x in p)
    fit_v = np.linspace(v.min(), v.max(), 100)
    out = {"v0": v0, "v0_err": float(err[3]), "e0": e0, "e0_err": float(err[0]), "B": b0 / units.GPa,
           "B_err": float(err[1] / units.GPa), "Bp": bp, "Bp_err": float(err[2]), "volumes": v.tolist(),
           "energies": e.tolist(), "fit_volumes": fit_v.tolist(),
           "fit_energies": birchmurnaghan(fit_v, *p).tolist(), "eos": "birchmurnaghan"}
    if crystal:
        a0 = lattice_constant(crystal, v0, covera)
        out["a0"], out["a0_err"] = a0, float(a0 * err[3] / (3 * v0))  # a ∝ V^(1/3)
    return out


def elastic_constants(atoms: Atoms, calculator, crystal: str = "fcc", delta: float = 0.002, n_steps: int = 5,
                      relax: bool = True, fmax: float = 1e-4, steps: int = 200, **_ignored) -> dict:
    """Elastic constants (GPa) of the relaxed conventional cell ``atoms`` from matscipy's linear
    regression of stress against strain (``fit_elastic_constants``), strain patterns for the
    ``crystal``'s symmetry (cubic: C11, C12, C44; hcp: C11, C12, C13, C33, C44), ``n_steps`` strains
    spaced ``delta``; ``relax``: internal relaxation (BFGS to ``fmax``) in each strained cell (needed
    for diamond and hcp). Returns the constants, their standard errors ``C11_err`` ..., the 6×6 ``C``
    and ``C_err`` and, for cubic crystals, ``B_elastic`` = (C11 + 2 C12)/3 ± error."""
    from ase.optimize import BFGS
    from matscipy.elasticity import fit_elastic_constants

    symmetry = SYMMETRY.get(crystal)
    if symmetry is None:
        raise SimulationConfigError(f"elastic: crystal must be one of {', '.join(SYMMETRY)}, got {crystal!r}")
    a = atoms.copy()
    a.calc = calculator
    kw = {"fmax": fmax, "steps": steps} if relax else {}
    c, c_err = fit_elastic_constants(a, symmetry=symmetry, N_steps=n_steps, delta=delta,
                                     optimizer=BFGS if relax else None, verbose=False, graphics=False, **kw)
    c, c_err = np.asarray(c) / units.GPa, np.asarray(c_err) / units.GPa
    index = {"C11": (0, 0), "C12": (0, 1), "C13": (0, 2), "C33": (2, 2), "C44": (3, 3)}
    out = {"C": c.tolist(), "C_err": c_err.tolist(), "symmetry": symmetry}
    for name in INDEPENDENT[symmetry]:
        out[name], out[f"{name}_err"] = float(c[index[name]]), float(c_err[index[name]])
    if symmetry == "cubic":
        out["B_elastic"] = (out["C11"] + 2 * out["C12"]) / 3
        out["B_elastic_err"] = math.hypot(out["C11_err"], 2 * out["C12_err"]) / 3
    return out


def _miller(crystal: str, facet: str) -> tuple[int, int, int]:
    if crystal == "hcp":
        if facet not in HCP_3INDEX:
            raise SimulationConfigError(f"surfaces: hcp facet must be one of {', '.join(HCP_3INDEX)}, got {facet!r}")
        return HCP_3INDEX[facet]
    digits = str(facet).replace("-", "")
    if len(digits) != 3 or not digits.isdigit():
        raise SimulationConfigError(f"surfaces: facet {facet!r} is not three Miller digits like '110'")
    return tuple(int(d) for d in digits)


def make_slab(cell: Atoms, crystal: str, facet: str, min_thickness: float = 12.0, size=(2, 2),
              vacuum: float = 10.0, termination: int = 0) -> Atoms:
    """A periodic slab of ``cell`` (the conventional cell) cut along ``facet`` by ``ase.build.surface``,
    with as many repeats of the surface cell as reach ``min_thickness`` (Å), repeated ``size`` in-plane
    and ``vacuum`` (Å) on each side. ``termination``: the index of the atomic plane (within one repeat,
    bottom up) at which the cut is made (see :func:`terminations`)."""
    from ase.build import surface

    miller = _miller(crystal, facet)
    one = surface(cell, miller, 1, vacuum=None, periodic=True)
    height, n_one = cell_height(one), len(one)
    layers = max(1, math.ceil(min_thickness / height - 1e-9))
    # two spare repeats: the outermost planes of ase's slab may be partly filled; cut inside
    thick = surface(cell, miller, layers + 2, vacuum=None, periodic=True)  # a, b in the xy plane
    z = thick.positions[:, 2]
    interior = (z >= z.min() + height - 1e-4) & (z < z.min() + 2 * height - 1e-4)
    planes = _planes(z[interior])
    z0 = planes[termination % len(planes)]
    keep = (z >= z0 - 1e-4) & (z < z0 + layers * height - 1e-4)
    slab = thick[keep]
    if len(slab) != layers * n_one:
        raise SimulationConfigError(f"surfaces: the {facet} slab of {crystal} cut at plane {termination} holds "
                                    f"{len(slab)} atoms, not {layers * n_one}")
    slab = slab.repeat((int(size[0]), int(size[1]), 1))
    slab.center(vacuum=vacuum, axis=2)
    slab.pbc = True
    return slab


def _planes(z, tol: float = 1e-3) -> list[float]:
    """Distinct heights (Å) of atomic planes."""
    out = []
    for v in np.sort(np.asarray(z)):
        if not out or v - out[-1] > tol:
            out.append(float(v))
    return out


def terminations(cell: Atoms, crystal: str, facet: str) -> int:
    """The number of distinct cut positions (atomic planes in one repeat of the surface cell) of ``facet``."""
    from ase.build import surface

    return len(_planes(surface(cell, _miller(crystal, facet), 1, vacuum=None, periodic=True).positions[:, 2]))


def cell_height(atoms: Atoms) -> float:
    c = atoms.cell.array
    return float(abs(np.linalg.det(c)) / np.linalg.norm(np.cross(c[0], c[1])))


def surface_energies(cell: Atoms, calculator, crystal: str = "fcc", millers=None, min_thickness: float = 12.0,
                     size=(2, 2), vacuum: float = 10.0, relax: bool = True, fmax: float = 0.01, steps: int = 300,
                     **_ignored) -> dict:
    """Relaxed surface energies γ (J/m²) of ``ase.build.surface`` slabs of ``cell`` (the relaxed
    conventional cell) for ``millers`` (default: :data:`FACETS` of the crystal).

    The bulk energy per atom is that of ``cell`` itself, so that γ is taken at the potential's own
    equilibrium. Returns ``gamma_<facet>``, ``gamma_<facet>_err`` (the relaxation's last-step energy change
    over 2A), unrelaxed values and step counts."""
    millers = tuple(str(m) for m in (millers or FACETS[crystal]))
    e_bulk = _energy(cell, calculator) / len(cell)
    out = {"e_bulk": e_bulk}
    for m in millers:
        # every cut position of the facet, unrelaxed; the lowest-energy termination is relaxed
        # (e.g. diamond (111): the shuffle plane, one dangling bond per surface atom, not the glide plane)
        best = None
        for k in range(terminations(cell, crystal, m)):
            trial = make_slab(cell, crystal, m, min_thickness, size, vacuum, termination=k)
            e_trial = _energy(trial, calculator)
            if best is None or e_trial / len(trial) < best[0] / len(best[1]) - 1e-9:
                best = (e_trial, trial, k)
        slab = best[1]
        out[f"termination_{m}"] = best[2]
        area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
        slab.calc = calculator
        e_unrelaxed = float(slab.get_potential_energy())
        e, n_steps, de = _relax(slab, calculator, fmax, steps) if relax else (e_unrelaxed, 0, 0.0)
        scale = EV_PER_A2_TO_J_PER_M2 / (2 * area)
        out[f"gamma_{m}"] = float((e - len(slab) * e_bulk) * scale)
        out[f"gamma_{m}_err"] = float(de * scale)
        out[f"gamma_{m}_unrelaxed"] = float((e_unrelaxed - len(slab) * e_bulk) * scale)
        out[f"relax_steps_{m}"] = n_steps
        out[f"n_atoms_{m}"] = len(slab)
        if relax and n_steps >= steps:
            out[f"gamma_{m}_err"] = max(out[f"gamma_{m}_err"], abs(out[f"gamma_{m}"] - out[f"gamma_{m}_unrelaxed"]))
    return out


def vacancy_formation(atoms: Atoms, calculator, index: int = 0, relax: bool = True, fmax: float = 0.01,
                      steps: int = 300, **_ignored) -> dict:
    """Vacancy formation energy (eV) in the supercell ``atoms`` (perfect, at the calculator's a0):
    E_vac = E(N−1, relaxed at fixed cell) − (N−1)/N · E(N); ``E_vac_err``: the relaxation's last-step energy
    change (the whole relaxation energy when the step limit was hit)."""
    n = len(atoms)
    e_perfect = _energy(atoms, calculator)
    defect = atoms.copy()
    del defect[index]
    defect.calc = calculator
    e_unrelaxed = float(defect.get_potential_energy())
    e_def, n_steps, de = _relax(defect, calculator, fmax, steps) if relax else (e_unrelaxed, 0, 0.0)
    if relax and n_steps >= steps:
        de = max(de, e_unrelaxed - e_def)
    return {"E_vac": float(e_def - (n - 1) / n * e_perfect), "E_vac_err": float(de),
            "E_vac_unrelaxed": float(e_unrelaxed - (n - 1) / n * e_perfect), "relax_steps": n_steps, "n_atoms": n}
