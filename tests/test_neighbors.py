"""Neighbour lists: periodic images, small cells, mixed periodicity, against ASE."""

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from mlpot.data.neighbors import neighbor_list
from tests.helpers import random_cell


def as_set(i, j, S):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(S, dtype=int).tolist())))


@pytest.mark.parametrize(
    "atoms,cutoff",
    [
        (bulk("Mo", "bcc", a=3.16, cubic=True), 5.2),  # 2 atoms, r_c > cell: all images
        (bulk("Mo", "bcc", a=3.16), 5.2),  # 1-atom primitive cell: self images
        (random_cell(["Cu", "S", "Cu"], a=3.0, seed=3), 6.0),  # triclinic
        (molecule("CH4"), 3.0),  # no pbc
    ],
)
def test_same_pairs_as_ase(atoms, cutoff):
    i, j, S = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    ia, ja, Sa = ase_neighbor_list("ijS", atoms, cutoff)
    assert as_set(i, j, S) == as_set(ia, ja, Sa)
    assert np.all(np.diff(i) >= 0)  # sorted by centre


def test_mixed_pbc_slab():
    slab = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    slab.pbc = [True, True, False]
    slab.center(vacuum=5.0, axis=2)
    i, j, S = neighbor_list(slab.positions, slab.cell.array, slab.pbc, 5.0)
    ia, ja, Sa = ase_neighbor_list("ijS", slab, 5.0)
    assert as_set(i, j, S) == as_set(ia, ja, Sa)
