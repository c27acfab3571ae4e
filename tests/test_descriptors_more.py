"""Chebyshev (aenet) and spherical-Bessel descriptors: independent NumPy references, finite
differences, invariances, the training cache's pair Jacobian, and export."""

import itertools

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.special import eval_legendre, spherical_jn

from mlpot.data import atoms_to_graph
from mlpot.descriptors.bessel import SphericalBessel, spherical_bessel, spherical_bessel_orders
from mlpot.descriptors.chebyshev import Chebyshev, typespin
from mlpot.descriptors.geometry import edge_vectors
from mlpot.models import HDNNP, Potential
from tests.helpers import check_invariances, check_pair_jacobian, random_cell
from tests.test_derivatives import check_forces_and_stress

ELEMENTS = ["Ti", "O"]


def make(kind, elements=ELEMENTS):
    if kind == "chebyshev":
        return Chebyshev(elements, radial_order=6, radial_cutoff=4.5, angular_order=4, angular_cutoff=3.8)
    return SphericalBessel(elements, n_max=4, cutoff=4.5, coupled=kind == "bessel_coupled")


def potential(kind, elements=ELEMENTS, seed=0):
    torch.manual_seed(seed)
    d = make(kind, elements)
    head = HDNNP(d.n_features_per_element, (8, 8), "tanh", e0=[-1.0 - k for k in range(len(elements))])
    return Potential(elements, d, head).double()


def pair_data(d, atoms):
    g = atoms_to_graph(atoms, d.elements, d.cutoff, dtype=torch.float64, with_labels=False)
    vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
    return g, vec


def fc(r, rc):
    return np.where(r < rc, 0.5 * (np.cos(np.pi * r / rc) + 1.0), 0.0)


def test_chebyshev_equals_direct_sums():
    d = make("chebyshev").double()
    atoms = random_cell(["Ti", "O", "O", "Ti", "O", "O"], a=3.5, seed=1)
    g, vec = pair_data(d, atoms)
    G = d.from_edges(vec, g.species, g.edge_index).numpy()
    i, V, z = g.edge_index[0].numpy(), vec.numpy(), g.species[g.edge_index[1]].numpy()
    w = np.array(typespin(2))
    ref = np.zeros_like(G)
    for a in range(len(atoms)):
        ps = np.where(i == a)[0]
        for p in ps:
            r = np.linalg.norm(V[p])
            t = np.polynomial.chebyshev.chebvander(2 * r / 4.5 - 1, 6)[0] * fc(r, 4.5)
            ref[a, :7] += t
            ref[a, 12:19] += t * w[z[p]]
        for p, q in itertools.combinations(ps, 2):
            r1, r2 = np.linalg.norm(V[p]), np.linalg.norm(V[q])
            t = np.polynomial.chebyshev.chebvander(V[p] @ V[q] / (r1 * r2), 4)[0] * fc(r1, 3.8) * fc(r2, 3.8)
            ref[a, 7:12] += t
            ref[a, 19:24] += t * w[z[p]] * w[z[q]]
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_chebyshev_length_does_not_grow_with_species():
    two = Chebyshev(["Ti", "O"], 8, 6.0, 5, 4.0)
    five = Chebyshev(["Ti", "O", "Li", "Fe", "Mn"], 8, 6.0, 5, 4.0)
    assert two.n_features == five.n_features == 2 * (9 + 6)
    assert Chebyshev(["Cu"], 8, 6.0, 5, 4.0).n_features == 9 + 6  # one species: no weighted copy
    assert typespin(2) == [-1.0, 1.0] and typespin(3) == [-1.0, 0.0, 1.0] and typespin(4) == [-2.0, -1.0, 1.0, 2.0]


def test_spherical_bessel_functions():
    x = torch.linspace(1e-3, 30.0, 3001, dtype=torch.float64)
    ref = np.stack([spherical_jn(l, x.numpy()) for l in range(8)], -1)
    np.testing.assert_allclose(spherical_bessel(7, x).numpy(), ref, rtol=0, atol=1e-12)
    order = torch.tensor([3, 0, 7, 1, 7, 2])  # one order per column, as the descriptor's radial channels use it
    cols = x[:, None] * torch.linspace(0.5, 1.0, len(order), dtype=torch.float64)
    want = np.stack([spherical_jn(int(l), cols[:, c].numpy()) for c, l in enumerate(order)], -1)
    np.testing.assert_allclose(spherical_bessel_orders(order, cols).numpy(), want, rtol=0, atol=1e-12)


def test_bessel_radial_basis_is_orthonormal_and_smooth_at_cutoff():
    d = make("bessel")
    r = torch.linspace(0.0, d.cutoff, 40001, dtype=torch.float64)[1:]
    g = d.radial(r).numpy()
    for l in range(d.n_max + 1):
        idx = np.where(d.chan_l.numpy() == l)[0]
        gram = np.trapezoid(g[:, idx, None] * g[:, None, idx] * r.numpy()[:, None, None] ** 2, r.numpy(), axis=0)
        np.testing.assert_allclose(gram, np.eye(len(idx)), atol=1e-6)
    rr = torch.tensor([d.cutoff - 1e-6], dtype=torch.float64, requires_grad=True)
    (val,) = torch.autograd.grad(d.radial(rr).sum(), rr)
    assert abs(val.item()) < 1e-4  # value and slope vanish at r_c


def bessel_double_sum_inputs(kind):
    """A Bessel descriptor, its features G of a random Ti-O cell, and what a direct double sum needs:
    per-pair centre i, vector V, neighbour species z, radial functions and each channel's l."""
    d = make(kind).double()
    atoms = random_cell(["Ti", "O", "O", "Ti", "O"], a=3.4, seed=2)
    g, vec = pair_data(d, atoms)
    G = d.from_edges(vec, g.species, g.edge_index).numpy()
    i, V, z = g.edge_index[0].numpy(), vec.numpy(), g.species[g.edge_index[1]].numpy()
    radial = d.radial(torch.linalg.norm(vec, dim=-1)).numpy()
    return d, atoms, g, vec, G, i, V, z, radial, d.chan_l.numpy()


def cos_angle(u, v):
    return np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)


def test_bessel_equals_direct_double_sum():
    d, atoms, g, vec, G, i, V, z, radial, ls = bessel_double_sum_inputs("bessel")
    pairs = [(0, 0), (0, 1), (1, 1)]
    ref = np.zeros((len(atoms), len(pairs), d.n_channels))
    for a in range(len(atoms)):
        ps = np.where(i == a)[0]
        for p, q in itertools.product(ps, ps):
            if z[p] > z[q]:
                continue
            c = cos_angle(V[p], V[q])
            ref[a, pairs.index((z[p], z[q]))] += radial[p] * radial[q] * (2 * ls + 1) / (4 * np.pi) * eval_legendre(ls, c)
    ref = ref.reshape(len(atoms), -1)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_coupled_bessel_equals_direct_double_sum():
    """SOAP-like coupling of the radial channels of each l: n <= n' for equal species, all (n, n') for
    a < b; the diagonal n = n' is the uncoupled descriptor."""
    d, atoms, g, vec, G, i, V, z, radial, ls = bessel_double_sum_inputs("bessel_coupled")
    ref = []
    for a in range(len(atoms)):
        ps = np.where(i == a)[0]
        row = []
        for sa, sb in [(0, 0), (0, 1), (1, 1)]:
            for l in range(d.n_max + 1):
                chs = np.where(ls == l)[0]
                for x, c1 in enumerate(chs):
                    for c2 in chs[x if sa == sb else 0 :]:
                        val = 0.0
                        for p, q in itertools.product(ps, ps):
                            if z[p] != sa or z[q] != sb:
                                continue
                            c = cos_angle(V[p], V[q])
                            val += radial[p, c1] * radial[q, c2] * (2 * l + 1) / (4 * np.pi) * eval_legendre(l, c)
                        row.append(val)
        ref.append(row)
    ref = np.array(ref)
    n_l = d.n_max + 1 - np.arange(d.n_max + 1)
    assert G.shape[1] == d.n_features == 2 * (n_l * (n_l + 1) // 2).sum() + (n_l**2).sum()
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    diag = SphericalBessel(d.elements, n_max=4, cutoff=4.5).double()
    plain = diag.from_edges(vec, g.species, g.edge_index).numpy()
    first = [0] + [int(k) for k in np.cumsum(n_l * (n_l + 1) // 2)[:-1]]
    on_diag = [f + x * n - x * (x - 1) // 2 for f, n in zip(first, n_l) for x in range(n)]  # (n, n) of each l
    np.testing.assert_allclose(G[:, on_diag], plain[:, : diag.n_channels], rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("kind", ["chebyshev", "bessel", "bessel_coupled"])
def test_pair_jacobian_equals_autograd(kind):
    d = make(kind).double()
    atoms = random_cell(["Ti", "O", "O", "Ti", "O", "O"], a=3.5, seed=3)
    check_pair_jacobian(d, *pair_data(d, atoms), step=5)


@pytest.mark.parametrize("kind", ["chebyshev", "bessel", "bessel_coupled"])
def test_finite_differences(kind):
    check_forces_and_stress(potential(kind, seed=4), random_cell(["Ti", "O", "O", "Ti", "O"], a=3.4, seed=5))


@pytest.mark.parametrize("kind", ["chebyshev", "bessel", "bessel_coupled"])
def test_invariances(kind):
    check_invariances(potential(kind, seed=6), random_cell(["Ti", "O", "O", "Ti", "O", "O"], a=3.8, seed=7))


@pytest.mark.parametrize("kind", ["chebyshev", "bessel", "bessel_coupled"])
def test_supercell_energy_per_atom(kind):
    pot = potential(kind, elements=["Mo"], seed=8)
    small = bulk("Mo", "bcc", a=3.16, cubic=True)
    small.positions[1] += [0.07, -0.05, 0.03]
    e_small, e_big = pot.predict(small, stress=True), pot.predict(small.repeat((3, 3, 3)), stress=True)
    assert abs(e_small["energy"].item() / 2 - e_big["energy"].item() / 54) < 1e-10
    np.testing.assert_allclose(e_big["stress"].numpy(), e_small["stress"].numpy(), atol=1e-10)


@pytest.mark.parametrize("kind", ["chebyshev", "bessel", "bessel_coupled"])
def test_export_round_trip(kind, tmp_path):
    from mlpot.export import load, save

    pot = potential(kind, seed=9)
    save(pot, tmp_path / "m.pt")
    atoms = random_cell(["Ti", "O", "O", "Ti"], a=3.3, seed=10)
    a, b = pot.predict(atoms), load(tmp_path / "m.pt").double().predict(atoms)
    assert abs(a["energy"].item() - b["energy"].item()) < 1e-10


@pytest.mark.parametrize("degree", [0, 1, 2, 4, 6])
def test_angular_monomials_degree_by_degree_equal_the_powers(degree):
    """The degree-by-degree monomials (every caller's path) are x^a y^b z^c of monomial_table's exponents, in its
    order, with the same derivatives (a NumPy reference and autograd against the closed form)."""
    from mlpot.descriptors.pairsum import angular_monomials, angular_monomials_with_grad, monomial_table

    expo, _ = monomial_table(degree)
    u = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)), dim=1)
    mono = angular_monomials(u, expo, degree)
    e = expo.numpy()
    ref = u.numpy()[:, None, 0] ** e[:, 0] * u.numpy()[:, None, 1] ** e[:, 1] * u.numpy()[:, None, 2] ** e[:, 2]
    np.testing.assert_allclose(mono.numpy(), ref, rtol=0, atol=1e-15)
    if degree == 0:
        return
    # derivatives with respect to the pair vector v = r u (r = 1.7), against the closed form of the Jacobian path
    r = torch.full((50,), 1.7, dtype=torch.float64)
    v = (u * r[:, None]).requires_grad_(True)
    w = torch.randn(50, expo.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (g,) = torch.autograd.grad((angular_monomials(v / torch.linalg.norm(v, dim=1, keepdim=True), expo, degree) * w).sum(), v)
    _, dmono = angular_monomials_with_grad(u, r, expo, degree)
    np.testing.assert_allclose(g.numpy(), torch.einsum("pm,pmc->pc", w, dmono).numpy(), rtol=0, atol=1e-12)
