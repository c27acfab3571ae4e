"""The ASE calculator's fast paths equal the plain ones: neighbour list reused within a skin against a
rebuild on every call (a 20-step NVE run), the calculator against ``Potential.predict``, float32 against
float64 (stated tolerance), ``compile=True`` against eager (skipped where torch.compile cannot run)."""

import warnings

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from mlpot.calculator import MLPotCalculator
from mlpot.errors import OverlappingAtomsError
from mlpot.descriptors import build_acsf
from mlpot.md.runner import thermalize
from mlpot.models import HDNNP, Potential


def _potential():
    """Radial, moment-expanded wide and triplet (narrow) angular kernels; the angular cutoff is shorter."""
    d = build_acsf(["Cu", "S"], cutoff=4.5, radial={"eta": [0.3, 1.0]},
                   angular=[{"type": 9, "eta": [0.05], "zeta": [1, 2], "rc": 3.5},
                            {"type": 3, "eta": [0.1], "zeta": [1.0, 2.5], "rc": 3.5}])
    torch.manual_seed(0)
    return Potential(["Cu", "S"], d, HDNNP(d.n_features_per_element, (8, 8), "tanh", e0=[-1.0, -2.0])).double()


def _atoms(seed=0, temperature=2000):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.symbols[::3] = "S"
    atoms.rattle(0.1, seed=seed)
    thermalize(atoms, temperature, np.random.default_rng(seed))
    return atoms


def _trajectory(calc, steps=20):
    atoms = _atoms()
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=2.0 * units.fs)
    rows = []

    def record():
        rows.append((atoms.get_potential_energy(), atoms.get_forces().copy(), atoms.get_stress().copy()))

    dyn.attach(record, interval=1)
    dyn.run(steps)
    return rows


def test_calculator_equals_predict():
    pot = _potential()
    atoms = _atoms()
    ref = pot.predict(atoms, stress=True)
    for skin in (0.0, 1.0):
        atoms.calc = MLPotCalculator(pot, skin=skin)
        assert abs(atoms.get_potential_energy() - ref["energy"].item()) < 1e-10
        np.testing.assert_allclose(atoms.get_forces(), ref["forces"].numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), ref["stress"][0].numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(atoms.get_potential_energies(), ref["atomic_energies"].numpy(), rtol=0, atol=1e-12)


def test_skin_reuse_equals_rebuild_every_step():
    """20 NVE steps at 2000 K: with a small skin the list is rebuilt a few times, with a large one never; both
    give the energies, forces and stresses of a list rebuilt on every call (1e-10)."""
    pot = _potential()
    plain = MLPotCalculator(pot, skin=0.0)
    ref = _trajectory(plain)
    assert plain.neighbors.rebuilds == 21
    for skin in (0.15, 2.0):
        calc = MLPotCalculator(pot, skin=skin)
        rows = _trajectory(calc)
        assert (1 if skin == 2.0 else 2) <= calc.neighbors.rebuilds < 21
        for (e0, f0, s0), (e1, f1, s1) in zip(ref, rows):
            assert abs(e0 - e1) < 1e-10
            np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-10)
            np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-10)


def test_skin_rebuilds_on_cell_and_atom_changes():
    pot = _potential()
    calc = MLPotCalculator(pot, skin=1.0)
    atoms = _atoms()
    atoms.calc = calc
    atoms.get_forces()
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)
    e = atoms.get_potential_energy()
    assert calc.neighbors.rebuilds == 2
    fresh = _atoms()
    fresh.set_cell(fresh.cell * 1.01, scale_atoms=True)
    fresh.calc = MLPotCalculator(pot, skin=0.0)
    assert abs(e - fresh.get_potential_energy()) < 1e-10
    del atoms[0]
    atoms.get_forces()
    assert calc.neighbors.rebuilds == 3


def test_reused_list_still_refuses_overlapping_atoms():
    atoms = _atoms(temperature=0)
    atoms.calc = MLPotCalculator(_potential(), skin=5.0)
    atoms.get_forces()
    d = atoms.get_distances(0, range(1, len(atoms)), mic=True)
    k = int(np.argmin(d)) + 1
    atoms.positions[0] += (atoms.get_distance(0, k, mic=True, vector=True)) * (1 - 0.05 / d[k - 1])
    with pytest.raises(OverlappingAtomsError):
        atoms.get_forces()


def test_float32_close_to_float64():
    """float32 evaluation: forces within 1e-4 eV/Å and energy within 1e-6 relative of float64."""
    pot = _potential()
    atoms = _atoms()
    atoms.calc = MLPotCalculator(pot, dtype="float64")
    e64, f64 = atoms.get_potential_energy(), atoms.get_forces()
    calc = MLPotCalculator(pot, dtype="float32")
    assert calc.dtype == torch.float32 and pot.dtype == torch.float64
    atoms.calc = calc
    assert abs(atoms.get_potential_energy() - e64) < 1e-6 * abs(e64)
    np.testing.assert_allclose(atoms.get_forces(), f64, rtol=0, atol=1e-4)
    assert MLPotCalculator(pot.float()).dtype == torch.float32  # None: the model's own dtype


def _compile_works() -> bool:
    try:
        torch.compile(lambda x: x * 2.0)(torch.ones(2))
        return True
    except Exception:  # noqa: BLE001 - no compiler toolchain
        return False


def _compiled_equals_eager():
    pot = _potential()
    eager = _trajectory(MLPotCalculator(pot), steps=3)
    calc = MLPotCalculator(pot, compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _trajectory(calc, steps=3)
    assert calc.compile and not [w for w in caught if "torch.compile failed" in str(w.message)]  # no fallback
    for (e0, f0, s0), (e1, f1, s1) in zip(eager, compiled):
        assert abs(e0 - e1) < 1e-10
        np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-10)
        np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-10)


def test_compile_failure_falls_back_with_a_warning(monkeypatch):
    pot = _potential()
    atoms = _atoms()
    atoms.calc = MLPotCalculator(pot)
    ref = atoms.get_forces()

    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no compiler\nsecond line")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    calc = MLPotCalculator(pot, compile=True)
    atoms.calc = calc
    with pytest.warns(UserWarning, match="torch.compile failed, running uncompiled: RuntimeError: no compiler$"):
        forces = atoms.get_forces()
    np.testing.assert_allclose(forces, ref, rtol=0, atol=0)
    assert calc.compile is False


@pytest.mark.skipif(not _compile_works(), reason="torch.compile cannot run here")
def test_compiled_equals_eager():
    """In a fresh process with one torch thread: with two, inductor (torch 2.13, CPU) fails to generate code for the
    float64 scatter of the energy and the calculator falls back to eager with a warning, as designed (noted in
    docs/md_speed.md); the comparison is what this test is for."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = "import tests.test_calculator as t; t._compiled_equals_eager(); print('ok')"
    import os

    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
