"""The cached-Jacobian path (stored descriptors and element-blocked pair Jacobians) equals the autograd path
of Potential.forward, in any chunking, and the element blocks drop nothing."""

import pytest
import torch

from mlpot.data import atoms_to_graph
from mlpot.data.jacobians import BlockLayout, LayoutError, collate, jacobian_records, probe_layout, split_blocks
from tests.helpers import random_cell, random_potential


def _frames():
    frames = [random_cell(["Cu", "S", "Cu", "S", "S"], a=3.6, seed=s) for s in range(3)]
    frames.append(random_cell(["Cu", "Cu"], a=2.9, seed=7))
    return frames


@pytest.mark.parametrize("cutoff", ["cos", "poly2", "tanh"])
@pytest.mark.parametrize("chunk_bytes", [1 << 28, 3000])  # one chunk per group; a few centre atoms per chunk
def test_cached_equals_autograd(cutoff, chunk_bytes):
    pot = random_potential(["Cu", "S"], types=(2, 3, 9), cutoff=4.0, cutoff_function=cutoff, alpha=0.1, seed=2)
    frames = _frames()
    records = jacobian_records(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64,
                               chunk_bytes=chunk_bytes)
    cached = pot.forward_cached(collate(records), forces=True, stress=True)
    ref = pot(atoms_to_graph(frames, pot.elements, pot.cutoff), forces=True, stress=True)
    for key in ("energy", "atomic_energies", "forces", "stress"):
        torch.testing.assert_close(cached[key].detach(), ref[key].detach(), rtol=0, atol=1e-10)
    # subsets batch the same way
    sub = pot.forward_cached(collate([records[3], records[1]]), forces=True)
    torch.testing.assert_close(sub["energy"].detach(), ref["energy"].detach()[[3, 1]], rtol=0, atol=1e-10)


def test_blocks_keep_only_the_columns_a_pair_touches():
    """Two elements, radial and angular functions: a Cu-S pair touches the S radial functions and the
    angular ones of the (Cu, S) and (S, S) pairs, not the Cu radial ones or (Cu, Cu) angular ones; the stored
    values are a strict subset, and a value outside a block is caught."""
    pot = random_potential(["Cu", "S"], types=(2, 9), cutoff=4.0, seed=2)
    d = pot.descriptor
    layout = probe_layout(d)
    names = d.feature_names("Cu")
    cu_s = [names[c] for c in layout.columns[0 * 2 + 1]]  # centre Cu, neighbour S
    assert cu_s and all("[S]" in n or "Cu-S" in n or "S-S" in n for n in cu_s), cu_s
    assert all(n in cu_s for n in names if "[S]" in n or "Cu-S" in n or "S-S" in n)
    assert sum(len(c) for c in layout.columns) < 4 * d.n_features
    J = torch.zeros(1, d.n_features, 3, dtype=torch.float64)
    J[0, [c for c in range(d.n_features) if c not in layout.columns[1]][0], 0] = 1.0
    with pytest.raises(LayoutError):
        split_blocks(J, torch.tensor([1]), layout)


def test_a_layout_that_misses_a_column_is_widened():
    """A layout with a column missing (as a probe that missed one would give) is widened, not trusted."""
    pot = random_potential(["Cu", "S"], types=(2, 9), cutoff=4.0, seed=2)
    good = probe_layout(pot.descriptor)
    bad = BlockLayout(good.n_elements, good.n_features, [c[1:] if c else c for c in good.columns])
    frames = _frames()
    records = jacobian_records(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64, layout=bad)
    assert records[0]["layout"].columns == good.columns
    cached = pot.forward_cached(collate(records), forces=True)
    ref = pot(atoms_to_graph(frames, pot.elements, pot.cutoff), forces=True)
    torch.testing.assert_close(cached["forces"].detach(), ref["forces"].detach(), rtol=0, atol=1e-10)


def test_pair_sum_jacobian_in_chunks_of_one_atom_is_the_same():
    """``pair_sum_jacobian`` bounds its working memory by working a chunk of centre atoms at a time; one atom per
    chunk gives the same J as one chunk for all, and forward mode (the default) the same as reverse mode."""
    from mlpot.descriptors.bessel import SphericalBessel
    from mlpot.descriptors.geometry import edge_vectors

    d = SphericalBessel(["Cu", "S"], n_max=3, cutoff=4.0, coupled=True)
    g = atoms_to_graph(_frames(), ["Cu", "S"], 4.0)
    vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
    G1, J1 = d.jacobian(vec, g.species, g.edge_index)
    G2, J2 = d.jacobian(vec, g.species, g.edge_index, max_bytes=1)
    torch.testing.assert_close(G1, G2, rtol=0, atol=0)
    torch.testing.assert_close(J1, J2, rtol=0, atol=1e-14)
    from mlpot.descriptors.pairsum import pair_sum_jacobian

    phi, dphi = d.pair_features_and_grad(vec, torch.linalg.norm(vec, dim=-1), g.species[g.edge_index[1]])
    combine = lambda a, rows: d.combine(a, g.species[rows])  # noqa: E731
    _, J3 = pair_sum_jacobian(phi, dphi, combine, g.edge_index[0], g.species.shape[0], mode="vjp")
    torch.testing.assert_close(J1, J3, rtol=0, atol=1e-13)
