"""Forces and stress equal central finite differences of the energy (float64, relative 1e-6)."""

import pytest
import torch

from mlpot.data import atoms_to_graph
from mlpot.descriptors.cutoff import NAMES
from tests.helpers import random_cell, random_potential

SMOOTH_CUTOFFS = [c for c in NAMES if c != "hard"]
H = 1e-5


def energy(pot, graph, positions=None, cell=None):
    g = graph.replace(positions=graph.positions if positions is None else positions,
                      cell=graph.cell if cell is None else cell)
    return pot(g, forces=False)["energy"].sum().item()


def check_forces_and_stress(pot, atoms, rtol=1e-6):
    graph = atoms_to_graph(atoms, pot.elements, pot.cutoff)
    out = pot(graph, forces=True, stress=True)
    forces, stress = out["forces"].detach(), out["stress"].detach()[0]
    fd = torch.zeros_like(forces)
    for a in range(len(atoms)):
        for k in range(3):
            p, m = graph.positions.clone(), graph.positions.clone()
            p[a, k] += H
            m[a, k] -= H
            fd[a, k] = -(energy(pot, graph, positions=p) - energy(pot, graph, positions=m)) / (2 * H)
    scale = forces.abs().max()
    assert scale > 1e-3, "forces too small for a meaningful test"
    assert (forces - fd).abs().max() <= rtol * scale, (forces - fd).abs().max()

    volume = torch.linalg.det(graph.cell[0]).abs()
    fd_s = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            vals = []
            for sign in (1, -1):
                eps = torch.zeros(3, 3, dtype=torch.float64)
                eps[i, j] = sign * H
                deform = torch.eye(3, dtype=torch.float64) + eps
                vals.append(energy(pot, graph, positions=graph.positions @ deform, cell=graph.cell @ deform))
            fd_s[i, j] = (vals[0] - vals[1]) / (2 * H) / volume
    s_scale = stress.abs().max()
    assert s_scale > 1e-5
    assert (stress - fd_s).abs().max() <= rtol * s_scale, (stress - fd_s).abs().max()


@pytest.mark.parametrize("sf_type", [2, 3, 9])
@pytest.mark.parametrize("cutoff", SMOOTH_CUTOFFS)
def test_finite_differences_per_type_and_cutoff(sf_type, cutoff):
    pot = random_potential(["Cu", "S"], types=(sf_type,), cutoff=4.0, cutoff_function=cutoff, seed=sf_type)
    atoms = random_cell(["Cu", "S", "Cu", "Cu", "S"], a=3.6, seed=1)
    check_forces_and_stress(pot, atoms)


@pytest.mark.parametrize("cutoff", ["cos", "poly2", "exp"])
def test_finite_differences_with_inner_radius(cutoff):
    pot = random_potential(["Cu", "S"], cutoff=4.0, cutoff_function=cutoff, alpha=0.3, seed=3)
    check_forces_and_stress(pot, random_cell(["Cu", "S", "Cu", "S"], a=3.4, seed=2))


@pytest.mark.parametrize("activation", ["tanh", "softplus", "shifted_softplus", "swish"])
def test_finite_differences_activations(activation):
    pot = random_potential(["Mo"], cutoff=4.0, activation=activation, seed=4)
    check_forces_and_stress(pot, random_cell(["Mo"] * 3, a=3.1, seed=5))


def test_small_cell_sees_its_images():
    """A 2-atom cell far smaller than the cutoff: forces and stress still exact."""
    pot = random_potential(["Mo"], cutoff=5.2, seed=6)
    atoms = random_cell(["Mo", "Mo"], a=3.16, seed=7, rattle=0.1, shear=0.0)
    check_forces_and_stress(pot, atoms)
