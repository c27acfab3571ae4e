"""Static property recipes: ``(atoms, calculator, **options) -> dict`` (energies in eV, lengths in Å).

- :func:`equation_of_state`: E(V) over isotropic strains, fitted with ``ase.eos`` → v0, e0, B, a0.
- :func:`elastic_constants`: cubic C11, C12, C44 from the stress of ± small strains (central differences).
- :func:`surface_energies`: γ = (E_slab − N e_bulk) / (2A) for relaxed ``ase.build`` slabs.
- :func:`vacancy_formation`: E_vac = E(N−1, relaxed) − (N−1)/N E(N) in a supercell (ASE optimiser).
Every recipe works on a copy; the caller's atoms are left unchanged.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase import eos as ase_eos
from ase.eos import EquationOfState

from mlpot.errors import SimulationConfigError

EV_PER_A2_TO_J_PER_M2 = units._e * 1e20  # 1 eV/Å² = 16.02 J/m²
SJ_EOS = "sj" if "sj" in getattr(ase_eos, "eos_names", ()) else "sjeos"  # renamed in ASE 3.29


def _energy(atoms: Atoms, calculator) -> float:
    a = atoms.copy()
    a.calc = calculator
    return float(a.get_potential_energy())


def _relax(atoms: Atoms, calculator, fmax: float, steps: int, optimizer: str = "BFGS") -> tuple[float, int]:
    """Relax positions (fixed cell) with an ASE optimiser; returns (energy, number of steps)."""
    import ase.optimize

    atoms.calc = calculator
    opt = getattr(ase.optimize, optimizer)(atoms, logfile=None)
    opt.run(fmax=fmax, steps=steps)
    return float(atoms.get_potential_energy()), int(opt.nsteps)


def equation_of_state(atoms: Atoms, calculator, strain: float = 0.02, n_points: int = 9, eos: str = "birchmurnaghan",
                      atoms_per_cell: int | None = None) -> dict:
    """E(V) for lattice scalings 1 ± ``strain`` (``n_points`` points), fitted by ``ase.eos``.

    Returns ``v0`` (Å³/atom), ``e0`` (eV/atom), ``B`` (GPa), the curve (``volumes``, ``energies`` per atom)
    and, when ``atoms_per_cell`` is given (4 for fcc, 2 for bcc), the cubic lattice constant ``a0`` (Å).
    """
    if n_points < 5:
        raise SimulationConfigError(f"equation_of_state: n_points must be >= 5, got {n_points}")
    n = len(atoms)
    volumes, energies = [], []
    for s in np.linspace(1 - strain, 1 + strain, n_points):
        a = atoms.copy()
        a.set_cell(atoms.cell * s, scale_atoms=True)
        volumes.append(a.get_volume() / n)
        energies.append(_energy(a, calculator) / n)
    try:
        with np.errstate(invalid="ignore"):  # a trial V0 < 0 during the fit
            v0, e0, b = EquationOfState(volumes, energies, eos=eos).fit()
    except (RuntimeError, ValueError):  # no convergence (E(V) far from a well): the linear SJ-EOS fit
        eos = SJ_EOS
        v0, e0, b = EquationOfState(volumes, energies, eos=eos).fit()
    out = {"v0": float(v0), "e0": float(e0), "B": float(b / units.GPa), "volumes": volumes, "energies": energies,
           "eos": eos}
    if atoms_per_cell:
        out["a0"] = float((v0 * atoms_per_cell) ** (1 / 3))
    return out


def _strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    a = atoms.copy()
    a.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return a


def elastic_constants(atoms: Atoms, calculator, delta: float = 0.005, relax: bool = True, fmax: float = 1e-4,
                      steps: int = 200) -> dict:
    """Cubic C11, C12, C44 (GPa) of a cubic cell from the stress of strains ±``delta``.

    Normal strains along x, y, z give C11 = dσ_ii/dε_ii and C12 = dσ_jj/dε_ii (averaged over
    directions); shear strains (engineering γ = 2ε) give C44 = dσ_yz/dγ_yz (averaged over yz, xz, xy).
    ``relax``: internal relaxation of positions in each strained cell (needed for non-Bravais lattices).
    ASE's stress sign (positive = tensile) is used, so C = dσ/dε.
    """
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]

    def stress(eps):
        a = _strained(atoms, eps)
        a.calc = calculator
        if relax:
            _relax(a, calculator, fmax, steps)
        return a.get_stress(voigt=True)

    c = np.zeros((6, 6))
    for k, (i, j) in enumerate(voigt):
        dsig = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            if i == j:
                eps[i, i] = sign * delta
            else:
                eps[i, j] = eps[j, i] = sign * delta / 2  # engineering shear strain γ = delta
            dsig.append(stress(eps))
        c[:, k] = (dsig[0] - dsig[1]) / (2 * delta) / units.GPa
    c11 = float(np.mean([c[0, 0], c[1, 1], c[2, 2]]))
    c12 = float(np.mean([c[1, 0], c[2, 0], c[0, 1], c[2, 1], c[0, 2], c[1, 2]]))
    c44 = float(np.mean([c[3, 3], c[4, 4], c[5, 5]]))
    return {"C11": c11, "C12": c12, "C44": c44, "B_elastic": (c11 + 2 * c12) / 3, "C": c.tolist()}


def surface_energies(element: str, calculator, a: float, millers=("100", "110", "111"), layers: int = 9,
                     size=(2, 2), vacuum: float = 10.0, relax: bool = True, fmax: float = 0.01, steps: int = 300,
                     crystal: str = "fcc") -> dict:
    """Relaxed surface energies γ (J/m²) of ``ase.build`` slabs (``layers`` layers, ``size`` in-plane).

    The bulk energy per atom is that of the ``crystal`` at lattice constant ``a`` (the calculator's own
    a0), so that γ is taken at the potential's equilibrium. Returns ``gamma_<miller>`` and details.
    """
    import ase.build

    from ase.build import bulk

    e_bulk = _energy(bulk(element, crystal, a=a, cubic=True), calculator) / (4 if crystal == "fcc" else 2)
    out = {"e_bulk": e_bulk}
    for m in millers:
        builder = getattr(ase.build, f"{crystal}{m}")
        slab = builder(element, size=(*size, layers), a=a, vacuum=vacuum, periodic=True)
        area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
        slab.calc = calculator
        e_unrelaxed = float(slab.get_potential_energy())
        e, n_steps = _relax(slab, calculator, fmax, steps) if relax else (e_unrelaxed, 0)
        gamma = (e - len(slab) * e_bulk) / (2 * area)
        out[f"gamma_{m}"] = float(gamma * EV_PER_A2_TO_J_PER_M2)
        out[f"gamma_{m}_unrelaxed"] = float((e_unrelaxed - len(slab) * e_bulk) / (2 * area) * EV_PER_A2_TO_J_PER_M2)
        out[f"relax_steps_{m}"] = n_steps
    return out


def vacancy_formation(atoms: Atoms, calculator, index: int = 0, relax: bool = True, fmax: float = 0.01,
                      steps: int = 300) -> dict:
    """Vacancy formation energy (eV) in the supercell ``atoms`` (perfect, at the calculator's a0):
    E_vac = E(N−1, relaxed at fixed cell) − (N−1)/N · E(N)."""
    n = len(atoms)
    e_perfect = _energy(atoms, calculator)
    defect = atoms.copy()
    del defect[index]
    defect.calc = calculator
    e_unrelaxed = float(defect.get_potential_energy())
    e_def, n_steps = _relax(defect, calculator, fmax, steps) if relax else (e_unrelaxed, 0)
    return {"E_vac": float(e_def - (n - 1) / n * e_perfect),
            "E_vac_unrelaxed": float(e_unrelaxed - (n - 1) / n * e_perfect), "relax_steps": n_steps, "n_atoms": n}
