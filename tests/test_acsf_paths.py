"""The fast forward path of ACSF (row sums + moment expansion of wide angular kernels) equals the
plain triplet sum, in values and in gradients, for mixed kernels and several elements."""

import torch

from mlpot.data import atoms_to_graph
from mlpot.descriptors import build_acsf
from mlpot.descriptors.acsf import ACSF
from mlpot.descriptors.geometry import edge_vectors
from tests.helpers import random_cell

ELEMENTS = ["Cu", "S", "Zn"]
KERNELS = dict(
    radial={"eta": [0.01, 0.3], "rs": [0.0, 1.5]},
    angular=[
        {"type": 9, "eta": [0.01, 0.08], "zeta": [1, 2, 5, 16], "lambda": [1, -1], "rs": [0.0, 0.7]},
        {"type": 9, "eta": [0.03], "zeta": [1.5], "lambda": [1]},  # non-integer zeta: triplets
        {"type": 3, "eta": [0.02], "zeta": [1, 3], "lambda": [1, -1], "rc": 4.0},
    ],
)


def _descriptors(moment_max_zeta):
    d = build_acsf(ELEMENTS, cutoff=4.8, cutoff_function="poly2", **KERNELS)
    return ACSF(ELEMENTS, d.functions, moment_max_zeta=moment_max_zeta).double()


def test_moment_expansion_equals_triplet_sum():
    fast, plain = _descriptors(8), _descriptors(-1)
    assert len(fast.mom_ku) > 0 and len(fast.tri_k) > 0 and len(plain.mom_ku) == 0
    atoms = random_cell(["Cu", "S", "Zn", "Cu", "S", "Cu"], a=4.0, seed=3)
    g = atoms_to_graph(atoms, ELEMENTS, 4.8, dtype=torch.float64, with_labels=False)
    weights = torch.randn(len(atoms), fast.n_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = []
    for d in (fast, plain):
        pos = g.positions.clone().requires_grad_(True)
        G = d(pos, g.species, g.edge_index, g.shifts, g.cell, g.batch)
        (grad,) = torch.autograd.grad((G * weights).sum(), pos)
        out.append((G.detach(), grad))
    (G1, d1), (G2, d2) = out
    assert G2.abs().max() > 1.0
    assert torch.allclose(G1, G2, rtol=0, atol=1e-12 * G2.abs().max())
    assert torch.allclose(d1, d2, rtol=0, atol=1e-12 * d2.abs().max())
    vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
    G3, _ = fast.jacobian(vec, g.species, g.edge_index)  # the training cache's path
    assert torch.allclose(G1, G3, rtol=0, atol=1e-12 * G2.abs().max())


def test_pair_sum_jacobian_equals_triplet_jacobian():
    """With every angular kernel moment-expanded, ``jacobian`` takes the pair-sum path; it must give the
    triplet path's G and J (and J must be the autograd derivative), for two elements and for one."""
    moment_only = dict(radial=KERNELS["radial"], angular=KERNELS["angular"][:1])
    for elements, symbols in ((ELEMENTS[:2], ["Cu", "S", "S", "Cu", "Cu"]), (["Cu"], ["Cu"] * 4)):
        funcs = build_acsf(elements, cutoff=4.8, cutoff_function="poly2", **moment_only).functions
        fast, plain = (ACSF(elements, funcs, moment_max_zeta=m).double() for m in (16, -1))
        assert len(fast.tri_k) == 0 and len(plain.mom_ku) == 0
        g = atoms_to_graph(random_cell(symbols, a=3.6, seed=4), elements, 4.8, dtype=torch.float64, with_labels=False)
        vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
        G1, J1 = fast.jacobian(vec, g.species, g.edge_index)
        G2, J2 = plain.jacobian(vec, g.species, g.edge_index)
        assert G2.abs().max() > 1.0 and J2.abs().max() > 0.1
        assert torch.allclose(G1, G2, rtol=0, atol=1e-12 * G2.abs().max())
        assert torch.allclose(J1, J2, rtol=0, atol=1e-12 * J2.abs().max())
        vv = vec.clone().requires_grad_(True)
        Gv = fast.from_edges(vv, g.species, g.edge_index)
        for f in range(0, fast.n_features, 7):
            (grad,) = torch.autograd.grad(Gv[:, f].sum(), vv, retain_graph=True)
            assert torch.allclose(grad, J1[:, f], rtol=0, atol=1e-12 * (1 + grad.abs().max()))


def test_planned_paths_equal_the_plain_triplet_sum():
    """The calculator's path (``edge_plan`` with the r_jk filter of narrow kernels, triplets and moment-block
    atoms in small chunks recomputed backwards, angular work only inside the angular cutoff) equals the plain triplet sum of
    ``moment_max_zeta=-1`` without a plan, in values and gradients (1e-12)."""
    narrow = dict(radial=KERNELS["radial"], angular=[{"type": 3, "eta": [0.02, 0.1], "zeta": [1, 3.5],
                                                      "lambda": [1, -1], "rc": 3.9}])
    for kernels in (narrow, KERNELS):
        funcs = build_acsf(ELEMENTS, cutoff=4.8, cutoff_function="poly2", **kernels).functions
        fast, plain = ACSF(ELEMENTS, funcs).double(), ACSF(ELEMENTS, funcs, moment_max_zeta=-1).double()
        atoms = random_cell(["Cu", "S", "Zn", "Cu", "S", "Cu", "Cu", "S"], a=4.2, seed=5)
        g = atoms_to_graph(atoms, ELEMENTS, 4.8, dtype=torch.float64, with_labels=False)
        vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
        plan = fast.edge_plan(vec.norm(dim=1), g.species, g.edge_index, vec, triplet_chunk=97, moment_chunk=2000)
        assert len(plan["chunks"]) > 2 and (kernels is narrow or len(plan["moment_chunks"]) > 2)
        if kernels is narrow:  # the filter dropped triplets, and chunks cover the rest
            assert fast._tri_jk_cutoff == 3.9
            full = fast.edge_plan(vec.norm(dim=1), g.species, g.edge_index)
            assert 0 < plan["p1"].shape[0] < full["p1"].shape[0]
        weights = torch.randn(len(atoms), fast.n_features, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(1))
        once = fast.edge_plan(vec.norm(dim=1), g.species, g.edge_index, vec, triplet_chunk=97, moment_chunk=2000,
                              once_differentiable=True)  # the calculator's recomputation of the chunks
        out = []
        for d, p in ((fast, plan), (fast, once), (plain, None)):
            v = vec.clone().requires_grad_(True)
            G = d.from_edges(v, g.species, g.edge_index, plan=p)
            (grad,) = torch.autograd.grad((G * weights).sum(), v)
            out.append((G.detach(), grad))
        (G2, d2) = out[-1]
        assert G2.abs().max() > 0.1
        for G1, d1 in out[:-1]:
            torch.testing.assert_close(G1, G2, rtol=0, atol=1e-12 * G2.abs().max())
            torch.testing.assert_close(d1, d2, rtol=0, atol=1e-12 * d2.abs().max())
