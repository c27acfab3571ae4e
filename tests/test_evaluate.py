"""Property recipes on EMT Cu against independent routes (ASE's tools, energy vs stress, known
geometry), the CNA on ideal lattices, the report, and the mlpot-evaluate app on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from scipy.optimize import minimize_scalar

from mlpot.evaluate import (
    bond_distributions,
    crystalline_fraction,
    diffusion_from_msd,
    elastic_constants,
    equation_of_state,
    msd,
    nve_drift,
    rdf,
    structure_types,
    surface_energies,
    time_to_fraction,
    vacancy_formation,
)
from mlpot.evaluate.dynamics import diffusion_blocks
from mlpot.evaluate.report import compare, verdict
from mlpot.evaluate.static import conventional_cell
from mlpot.evaluate.structure import BCC, FCC, HCP, OTHER

EMT_CU_A0 = 3.589825  # Å: 1-D minimisation of the EMT energy (see mlpot/data/builtin.py)


def emt_energy(a):
    atoms = bulk("Cu", "fcc", a=a, cubic=True)
    atoms.calc = EMT()
    return atoms.get_potential_energy() / len(atoms)


@pytest.fixture(scope="module")
def eos():
    return equation_of_state(bulk("Cu", "fcc", a=3.6, cubic=True), EMT(), crystal="fcc")


def test_eos_a0_matches_direct_minimisation(eos):
    a_min = minimize_scalar(emt_energy, bracket=(3.5, 3.6, 3.7), tol=1e-10).x
    assert a_min == pytest.approx(EMT_CU_A0, abs=2e-5)
    assert eos["a0"] == pytest.approx(a_min, abs=2e-4)
    assert eos["e0"] == pytest.approx(emt_energy(a_min), abs=1e-5)
    # the fit's standard errors: small for a smooth potential, but not zero; the points lie on the curve
    assert 0 < eos["a0_err"] < 1e-4 and 0 < eos["B_err"] < 0.01 * eos["B"]
    assert np.interp(eos["volumes"][3], eos["fit_volumes"], eos["fit_energies"]) == pytest.approx(eos["energies"][3], abs=1e-5)


def test_elastic_constants_from_stress_equal_energy_curvature(eos):
    a0 = eos["a0"]
    cell = bulk("Cu", "fcc", a=a0, cubic=True)
    c = elastic_constants(cell, EMT())
    # energy route: E(ε)/V = ½ C ε² (uniaxial, C11) and ½ C44 γ² (engineering shear)
    h, v = 2e-3, cell.get_volume()

    def energy(eps):
        a = cell.copy()
        a.set_cell(cell.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        a.calc = EMT()
        return a.get_potential_energy()

    e0 = energy(np.zeros((3, 3)))
    uni = np.zeros((3, 3))
    uni[0, 0] = h
    c11 = (energy(uni) + energy(-uni) - 2 * e0) / h**2 / v / units.GPa
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = h / 2
    c44 = (energy(shear) + energy(-shear) - 2 * e0) / h**2 / v / units.GPa
    assert c["C11"] == pytest.approx(c11, rel=5e-3)
    assert c["C44"] == pytest.approx(c44, rel=5e-3)
    assert c["B_elastic"] == pytest.approx(eos["B"], rel=1e-2)  # B = (C11 + 2 C12)/3 for cubic
    assert all(0 < c[f"{k}_err"] < 0.02 * c[k] for k in ("C11", "C12", "C44"))
    assert c["C11"] > c["C12"] > 0 and c["C44"] > 0


def test_surface_energies_against_a_hand_computed_slab(eos):
    a0 = eos["a0"]
    g = surface_energies(conventional_cell("Cu", "fcc", a0), EMT(), "fcc", min_thickness=10.0)
    assert g["gamma_111"] < g["gamma_100"] < g["gamma_110"]  # close-packed face lowest
    for m in ("100", "110", "111"):
        assert g[f"gamma_{m}"] <= g[f"gamma_{m}_unrelaxed"] + 1e-9
        assert 0 <= g[f"gamma_{m}_err"] < 1e-3
    # the same γ(111) by hand, unrelaxed, thicker slab: E_slab − N e_bulk over both faces
    slab = fcc111("Cu", size=(1, 1, 11), a=a0, vacuum=8.0, periodic=True)
    slab.calc = EMT()
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    hand = (slab.get_potential_energy() - len(slab) * emt_energy(a0)) / (2 * area) * units._e * 1e20
    assert g["gamma_111_unrelaxed"] == pytest.approx(hand, rel=1e-3)


def test_vacancy_formation_relaxes_below_unrelaxed(eos):
    cell = bulk("Cu", "fcc", a=eos["a0"], cubic=True).repeat(2)
    v = vacancy_formation(cell, EMT())
    assert 0.8 < v["E_vac"] < v["E_vac_unrelaxed"] < 1.6
    # unrelaxed by hand
    e_perfect = emt_energy(eos["a0"]) * len(cell)
    defect = cell.copy()
    del defect[5]
    defect.calc = EMT()
    assert v["E_vac_unrelaxed"] == pytest.approx(defect.get_potential_energy() - 31 / 32 * e_perfect, abs=1e-9)


def test_msd_and_einstein_diffusion_of_a_random_walk():
    rng = np.random.default_rng(0)
    d_true, dt = 0.01, 10.0  # Å²/fs, fs between frames
    steps = rng.normal(0.0, np.sqrt(2 * d_true * dt), size=(400, 1000, 3))
    m = msd(np.cumsum(steps, axis=0), max_lag=100)
    t = np.arange(len(m)) * dt
    assert m[1] == pytest.approx(6 * d_true * dt, rel=0.05)
    fit = diffusion_from_msd(t, m)
    assert fit["D"] == pytest.approx(d_true * 0.1, rel=0.05)  # 1 Å²/fs = 0.1 cm²/s
    # the FFT MSD equals the direct average over time origins
    x = np.cumsum(steps[:50, :20], axis=0)
    x = x - x.mean(axis=1, keepdims=True)
    direct = [np.mean(np.sum((x[k:] - x[:-k]) ** 2, axis=-1)) for k in range(1, 10)]
    assert msd(np.cumsum(steps[:50, :20], axis=0), 9)[1:] == pytest.approx(direct, rel=1e-10)


def test_diffusion_error_from_blocks_covers_the_truth():
    rng = np.random.default_rng(1)
    d_true, dt = 0.01, 100.0
    hits = 0
    for k in range(20):
        x = np.cumsum(rng.normal(0.0, np.sqrt(2 * d_true * dt), size=(500, 50, 3)), axis=0)
        r = diffusion_blocks(x, dt, n_blocks=5)
        assert r["D_err"] > 0
        hits += abs(r["D"] - d_true * 0.1) < 2 * r["D_err"]
    assert hits >= 14  # 5 blocks: Student t with 4 degrees of freedom, 2 sigma holds the true D ~88 % of the time
    # too short to split into blocks of min_block_fs: unresolved
    assert diffusion_blocks(x[:30], 10.0)["D_err"] == np.inf


def test_nve_drift_is_small_for_emt():
    r = nve_drift(bulk("Cu", "fcc", a=EMT_CU_A0, cubic=True).repeat(2), EMT(), temperature_K=600, timestep_fs=1.0,
                  steps=200, equil_steps=20, interval=5)
    assert r["duration_ps"] == pytest.approx(0.2)
    assert r["nve_drift"] < 5.0 and r["nve_fluctuation"] < 5.0  # meV/atom/ps, meV/atom
    assert r["nve_drift_err"] > 0 and r["drift_per_atom"][0] == 0.0


def test_rdf_and_bond_distributions_of_ideal_fcc():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    g = rdf(atoms, rmax=5.0, nbins=200)
    assert g["r_peak"] == pytest.approx(3.6 / np.sqrt(2), abs=0.03)
    b = bond_distributions(atoms, cutoff=3.0)
    # 12 neighbours: 66 angles, 24 × 60°, 12 × 90°, 24 × 120°, 6 × 180°
    assert b["mean_angle"] == pytest.approx(6480 / 66, abs=1e-6)
    assert b["mean_length"] == pytest.approx(3.6 / np.sqrt(2), abs=1e-9)


def test_structure_types_on_ideal_and_disordered_structures():
    fcc = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    assert np.all(structure_types(fcc) == FCC)
    hcp = bulk("Cu", "hcp", a=2.55, c=2.55 * np.sqrt(8 / 3)).repeat(3)
    assert np.all(structure_types(hcp) == HCP)
    bcc = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(3)
    assert np.all(structure_types(bcc) == BCC)
    warm = fcc.copy()
    warm.rattle(0.08, seed=1)
    assert np.all(structure_types(warm) == FCC)
    gas = fcc.copy()
    gas.positions = np.random.default_rng(0).uniform(0, 10.8, (len(gas), 3))
    assert np.mean(structure_types(gas) != OTHER) < 0.05
    # half crystal, half gas along z: the crystalline fraction sees it; the mask selects atoms
    mixed = fcc.copy()
    top = mixed.get_scaled_positions()[:, 2] >= 0.5
    mixed.positions[top] = gas.positions[top]
    f = crystalline_fraction([fcc, mixed], mask=~top)
    assert f["crystalline"][0] == 1.0 and f["fcc"][1] < 1.0
    assert time_to_fraction([0.0, 1.0, 2.0], [0.2, 0.95, 1.0], 0.9) == 1.0


def test_report_rows_and_verdicts():
    t = compare({"a0": 3.6, "a0_err": 0.0, "nve_drift": 0.5, "nve_drift_err": 0.1, "D": 2.0e-5, "D_err": 1e-7},
                {"a0": 3.59, "a0_err": 0.0, "nve_drift": 0.1, "D": 2.5e-5, "D_err": 1e-7})
    assert t["a0"]["rel_error"] == pytest.approx(0.01 / 3.59) and t["a0"]["unit"] == "Å"
    assert verdict("a0", t["a0"]) == "FAIL" and verdict("nve_drift", t["nve_drift"]) == "pass"
    assert verdict("D", t["D"]) == "FAIL" and t["D"]["difference_err"] == pytest.approx(np.hypot(1e-7, 1e-7))
    # no uncertainty: never a pass
    assert compare({"B": 100.0}, {"B": 100.0})["B"]["verdict"] == "not resolved"


def test_evaluate_app_writes_results_for_a_model_and_emt(tmp_path):
    from mlpot.evaluate.app import run
    from mlpot.export import save
    from tests.helpers import tiny_evaluate_config
    from tests.test_md import fitted_tiny

    model = save(fitted_tiny(), tmp_path / "model.pt")
    cfg = tiny_evaluate_config(model, tmp_path / "report", liquid_steps=40, frame_interval=20)
    table = run(cfg)
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    for key in ("a0", "B", "C11", "C12", "C44", "gamma_111", "E_vac", "D", "nve_drift"):
        assert {"value", "value_err", "reference", "reference_err", "difference", "verdict"} <= set(saved[key]), key
        assert saved[key]["reference"] is not None
    assert saved["a0"]["reference"] == pytest.approx(EMT_CU_A0, abs=1e-3)
    assert table["B"]["unit"] == "GPa"
    for name in ("report.md", "eos.png", "rdf.png", "msd.png", "nve_energy.png"):
        assert (tmp_path / "report" / name).is_file(), name
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| a0 | Å |" in report and "crystal given: Cu fcc" in report
    assert saved["D"]["verdict"] == "not resolved"  # 80 fs of liquid: D's uncertainty is unresolved
