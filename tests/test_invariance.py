"""Rotation, translation, permutation and supercell invariance (float64)."""

import numpy as np
import pytest
from ase.build import bulk
from scipy.spatial.transform import Rotation

from tests.helpers import random_cell, random_potential


@pytest.fixture(scope="module")
def pot():
    return random_potential(["Cu", "S"], cutoff=4.5, seed=11)


@pytest.fixture(scope="module")
def atoms():
    return random_cell(["Cu", "S", "Cu", "Cu", "S", "S"], a=4.0, seed=12)


def test_rotation(pot, atoms):
    ref = pot.predict(atoms)
    R = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    rot = atoms.copy()
    rot.positions = atoms.positions @ R.T
    rot.cell = atoms.cell.array @ R.T
    out = pot.predict(rot)
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out["forces"].numpy(), ref["forces"].numpy() @ R.T, atol=1e-10)
    np.testing.assert_allclose(out["atomic_energies"].numpy(), ref["atomic_energies"].numpy(), atol=1e-10)


def test_translation_and_wrapping(pot, atoms):
    ref = pot.predict(atoms)
    moved = atoms.copy()
    moved.positions += np.array([1.7, -2.3, 0.4])
    moved.wrap()
    out = pot.predict(moved)
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out["forces"].numpy(), ref["forces"].numpy(), atol=1e-10)


def test_permutation(pot, atoms):
    ref = pot.predict(atoms)
    perm = np.random.default_rng(0).permutation(len(atoms))
    out = pot.predict(atoms[perm])
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out["forces"].numpy(), ref["forces"].numpy()[perm], atol=1e-10)
    np.testing.assert_allclose(out["atomic_energies"].numpy(), ref["atomic_energies"].numpy()[perm], atol=1e-10)


def test_supercell_energy_per_atom():
    """A 2-atom Mo cell (r_c = 5.2 Å, far larger than the cell) and its 3x3x3 supercell."""
    pot = random_potential(["Mo"], cutoff=5.2, seed=13)
    small = bulk("Mo", "bcc", a=3.16, cubic=True)
    small.positions[1] += [0.07, -0.05, 0.03]  # not a perfect lattice
    big = small.repeat((3, 3, 3))
    e_small = pot.predict(small, stress=True)
    e_big = pot.predict(big, stress=True)
    assert abs(e_small["energy"].item() / 2 - e_big["energy"].item() / 54) < 1e-10
    np.testing.assert_allclose(e_big["stress"].numpy(), e_small["stress"].numpy(), atol=1e-10)
    np.testing.assert_allclose(e_big["forces"].numpy()[:2], e_small["forces"].numpy(), atol=1e-10)


def test_batch_equals_single(pot, atoms):
    """Structures batched into one graph give the same results as one at a time."""
    other = random_cell(["S", "Cu", "Cu"], a=3.5, seed=14)
    both = pot.predict([atoms, other])
    one, two = pot.predict(atoms), pot.predict(other)
    np.testing.assert_allclose(both["energy"].numpy(), [one["energy"].item(), two["energy"].item()], atol=1e-12)
    np.testing.assert_allclose(both["forces"].numpy(), np.vstack([one["forces"], two["forces"]]), atol=1e-12)
