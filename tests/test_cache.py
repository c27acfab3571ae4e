"""The cached-Jacobian training path equals the autograd path of Potential.forward."""

import pytest
import torch

from mlpot.data import atoms_to_graph
from mlpot.training.cache import collate, precompute, predict_cached
from tests.helpers import random_cell, random_potential


@pytest.mark.parametrize("cutoff", ["cos", "poly2", "tanh"])
def test_cached_equals_autograd(cutoff):
    pot = random_potential(["Cu", "S"], types=(2, 3, 9), cutoff=4.0, cutoff_function=cutoff, alpha=0.1, seed=2)
    frames = [random_cell(["Cu", "S", "Cu", "S", "S"], a=3.6, seed=s) for s in range(3)]
    frames.append(random_cell(["Cu", "Cu"], a=2.9, seed=7))
    records = precompute(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64, chunk=3)
    batch = collate(records)
    cached = predict_cached(pot, batch, forces=True, stress=True)
    ref = pot(atoms_to_graph(frames, pot.elements, pot.cutoff), forces=True, stress=True)
    for key in ("energy", "atomic_energies", "forces", "stress"):
        torch.testing.assert_close(cached[key].detach(), ref[key].detach(), rtol=0, atol=1e-10)
    # subsets batch the same way
    sub = predict_cached(pot, collate([records[3], records[1]]), forces=True)
    torch.testing.assert_close(sub["energy"].detach(), ref["energy"].detach()[[3, 1]], rtol=0, atol=1e-10)
