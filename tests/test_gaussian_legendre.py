"""Pun et al.'s Gaussian × Legendre fingerprints (mlpot.descriptors.gaussian_legendre): a plain
triplet double sum written here, invariances, the training cache's pair Jacobian, a PINN on them
(finite differences, cached path), export, and the Hydra presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.special import eval_legendre

from mlpot.data import atoms_to_graph
from mlpot.descriptors.cutoff import cutoff_function
from mlpot.descriptors.gaussian_legendre import GaussianLegendre, pinn_cutoff
from mlpot.descriptors.geometry import edge_vectors
from mlpot.models import PINN, Potential
from tests.helpers import cached_and_forward, random_cell, rotated_and_moved
from tests.test_derivatives import check_forces_and_stress

ELEMENTS = ["Ta", "Mo"]
RC = 4.5


pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = {
    "papers": dict(r0=[1.5, 2.2, 2.9, 3.6], sigma=1.0, l=[0, 1, 2, 4, 6], cutoff=RC, d=1.5),
    "variant": dict(r0=[2.0, 2.7, 3.4], sigma=[0.6, 0.9, 1.2], l=[0, 3, 5], cutoff=RC, cutoff_function="cos",
                    shift=0.3, transform="none"),
}


def make(name="papers", elements=ELEMENTS):
    return GaussianLegendre(elements, **SETTINGS[name]).double()


def descriptors(d, atoms):
    g = atoms_to_graph(atoms, d.elements, d.cutoff, dtype=torch.float64, with_labels=False)
    vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch)
    return g, vec, d.from_edges(vec, g.species, g.edge_index)


# -- the reference: plain loops over atoms, neighbour pairs (j = k included) and the parameters -----
def reference(atoms, elements, r0, sigma, l, cutoff, cutoff_function="pinn", d=1.5, shift=0.0, transform="asinh"):
    sigma = sigma if isinstance(sigma, list) else [sigma] * len(r0)
    ii, jj, dd = neighbor_list("ijD", atoms, cutoff)
    kind = [elements.index(s) for s in atoms.get_chemical_symbols()]
    blocks = [(a, b) for a in range(len(elements)) for b in range(a, len(elements))]

    def fcut(r):
        if r >= cutoff:
            return 0.0
        if cutoff_function == "pinn":
            return (cutoff - r) ** 4 / (d**4 + (cutoff - r) ** 4)
        return 0.5 * (math.cos(math.pi * r / cutoff) + 1.0)  # "cos"

    out = np.zeros((len(atoms), len(blocks), len(r0), len(l)))
    for i in range(len(atoms)):
        nbrs = [(dd[p], kind[jj[p]]) for p in range(len(ii)) if ii[p] == i]
        for b, (beta, gamma) in enumerate(blocks):
            for s in range(len(r0)):
                for c, order in enumerate(l):
                    total = shift
                    for vj, zj in nbrs:
                        for vk, zk in nbrs:
                            if zj != beta or zk != gamma:
                                continue
                            rj, rk = np.linalg.norm(vj), np.linalg.norm(vk)
                            fj = math.exp(-((rj - r0[s]) ** 2) / sigma[s] ** 2) / r0[s] * fcut(rj)
                            fk = math.exp(-((rk - r0[s]) ** 2) / sigma[s] ** 2) / r0[s] * fcut(rk)
                            cos = min(1.0, max(-1.0, float(vj @ vk) / (rj * rk)))
                            total += eval_legendre(order, cos) * fj * fk
                    out[i, b, s, c] = math.asinh(total) if transform == "asinh" else total
    return out.reshape(len(atoms), -1)


def cluster(symbols, box=3.3, min_dist=1.9, seed=0):
    """A non-periodic cluster: uniform positions in a box, no two atoms closer than ``min_dist``."""
    rng = np.random.default_rng(seed)
    while True:
        pos = rng.uniform(0.0, box, (len(symbols), 3))
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(len(symbols), 1)]
        if dist.min() > min_dist:
            return Atoms(symbols, positions=pos)


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("pbc", [True, False])
def test_equals_direct_triplet_double_sum(name, pbc):
    d = make(name)
    symbols = ["Ta", "Mo", "Mo", "Ta", "Ta", "Mo"]
    atoms = random_cell(symbols[:5], a=3.3, seed=1) if pbc else cluster(symbols, seed=1)
    G = descriptors(d, atoms)[2].numpy()
    ref = reference(atoms, ELEMENTS, **SETTINGS[name])
    assert G.shape == (len(atoms), d.n_features) and d.n_features == 3 * len(d.r0) * len(d.l)
    cfg = SETTINGS[name]
    empty = cfg.get("shift", 0.0) if cfg.get("transform") == "none" else math.asinh(cfg.get("shift", 0.0))
    signal = np.abs(ref - empty)  # what the neighbours contribute
    assert signal.max() > 0.1 and (signal > 1e-3).mean() > 0.3, (signal.max(), (signal > 1e-3).mean())
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-10)


def test_single_element_identities():
    """One element: Γ_{s,0} = (Σ_j f_s(r_ij))², and every Γ_{s,l} ≥ 0 (j = k included: a power spectrum)."""
    d = GaussianLegendre(["Ta"], **dict(SETTINGS["papers"], transform="none")).double()
    atoms = random_cell(["Ta"] * 4, a=3.2, seed=2)
    g, vec, G = descriptors(d, atoms)
    f = d.radial(torch.linalg.norm(vec, dim=-1))
    sums = torch.zeros(len(atoms), len(d.r0), dtype=torch.float64).index_add(0, g.edge_index[0], f)
    G = G.view(len(atoms), len(d.r0), len(d.l))
    assert torch.allclose(G[:, :, 0], sums**2, rtol=1e-12, atol=0)
    assert (G > -1e-12).all()


def test_float32_matches_float64():
    """The moment expansion of P_l (up to l = 6) keeps float32 descriptors accurate."""
    atoms = random_cell(["Ta", "Mo", "Mo", "Ta", "Ta", "Mo"], a=3.6, seed=8)
    g64 = descriptors(make(), atoms)[2]
    d32 = GaussianLegendre(ELEMENTS, **SETTINGS["papers"])
    g = atoms_to_graph(atoms, ELEMENTS, d32.cutoff, dtype=torch.float32, with_labels=False)
    g32 = d32(g.positions, g.species, g.edge_index, g.shifts, g.cell, g.batch)
    assert g32.dtype == torch.float32
    assert torch.allclose(g32.double(), g64, rtol=0, atol=1e-5 * float(g64.abs().max()))


def test_pinn_cutoff_is_the_bop_cutoff():
    from mlpot.models.bop import bop_cutoff

    r = torch.linspace(0.0, 6.0, 601, dtype=torch.float64)
    assert torch.equal(pinn_cutoff(r, 4.5, 1.3), bop_cutoff(r, 4.5, 1.3))
    assert torch.equal(make("variant").fc(r), cutoff_function(r, RC, "cos"))


def test_rotation_and_permutation_invariance():
    d = make()
    atoms = random_cell(["Ta", "Mo", "Mo", "Ta", "Ta", "Mo"], a=3.6, seed=3)
    G = descriptors(d, atoms)[2]
    rot, R, moved, perm = rotated_and_moved(atoms)
    assert torch.allclose(descriptors(d, rot)[2], G, rtol=0, atol=1e-12)
    assert torch.allclose(descriptors(d, moved)[2], G[perm], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_pair_jacobian_equals_autograd(name):
    d = make(name)
    atoms = random_cell(["Ta", "Mo", "Mo", "Ta", "Ta"], a=3.4, seed=4)
    g, vec, _ = descriptors(d, atoms)
    G, J = d.jacobian(vec, g.species, g.edge_index)
    vv = vec.clone().requires_grad_(True)
    Gv = d.from_edges(vv, g.species, g.edge_index)
    assert torch.allclose(G, Gv.detach(), rtol=0, atol=1e-13)
    assert J.shape == (vec.shape[0], d.n_features, 3)
    for f in range(d.n_features):
        (grad,) = torch.autograd.grad(Gv[:, f].sum(), vv, retain_graph=True)
        assert torch.allclose(grad, J[:, f], rtol=0, atol=1e-12 * (1 + grad.abs().max())), f


def test_bad_input():
    with pytest.raises(ValueError, match="r0"):
        GaussianLegendre(["Ta"], r0=[2.0, -1.0])
    with pytest.raises(ValueError, match="sigma"):
        GaussianLegendre(["Ta"], r0=[2.0, 3.0], sigma=[1.0])
    with pytest.raises(ValueError, match="distinct integers"):
        GaussianLegendre(["Ta"], l=[0, 2, 2])
    with pytest.raises(ValueError, match="unknown transform"):
        GaussianLegendre(["Ta"], transform="log")
    with pytest.raises(ValueError, match="unknown cutoff function"):
        GaussianLegendre(["Ta"], cutoff_function="gauss")


# -- the PINN on these inputs ------------------------------------------------------------------------
def make_pinn(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    d = GaussianLegendre(ELEMENTS, r0=[2.0, 2.8, 3.6], sigma=1.0, l=[0, 1, 2, 4], cutoff=4.2, d=1.3)
    head = PINN(d.n_features_per_element, hidden=(6,), cutoff=4.2, d=1.3, e0=[-0.5, -0.25])
    for net in head.nets.nets:  # non-zero δp, so that the fingerprints matter
        torch.nn.init.normal_(net[-1].weight, std=0.3)
        torch.nn.init.normal_(net[-1].bias, std=0.1)
    pot = Potential(ELEMENTS, d, head).to(dtype)
    n_el, F = pot.scaler.a.shape
    g = torch.Generator().manual_seed(seed)
    pot.scaler.a.copy_(0.3 + torch.rand(n_el, F, generator=g, dtype=torch.float64))
    pot.scaler.b.copy_(-0.5 + 0.1 * torch.randn(n_el, F, generator=g, dtype=torch.float64))
    return pot


def test_pinn_forces_and_stress_equal_finite_differences():
    pot = make_pinn(seed=1)
    atoms = random_cell(["Ta", "Mo", "Ta", "Ta"], a=3.4, seed=5, rattle=0.12)
    graph = atoms_to_graph(atoms, pot.elements, pot.cutoff)
    with torch.no_grad():
        _, delta = pot.head.atom_parameters(pot.scaler(pot.features(graph), graph.species), graph.species)
    assert float(delta.abs().min()) > 1e-4  # the fingerprints move every parameter of every atom
    check_forces_and_stress(pot, atoms)


def test_pinn_cached_path_equals_forward():
    """The training path (cached pair vectors and the descriptor's pair Jacobian) gives forward's E, F, σ."""
    pot = make_pinn(seed=2)
    got, ref = cached_and_forward(pot, [random_cell(["Ta", "Mo", "Ta"], a=3.3, seed=s) for s in range(2)])
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(got[k], ref[k], rtol=0, atol=1e-10), k


def test_export_round_trip(tmp_path):
    from mlpot.export import load, read_info, save

    pot = make_pinn(seed=3)
    path = save(pot, tmp_path / "model.pt")
    info = read_info(path)
    assert info["descriptor"]["class"] == "GaussianLegendre"
    assert info["descriptor"]["config"] == pot.descriptor.config()
    back = load(path)
    assert isinstance(back.descriptor, GaussianLegendre)
    atoms = random_cell(["Ta", "Mo", "Ta", "Mo"], a=3.3, seed=6)
    a, b = pot.predict(atoms, stress=True), back.double().predict(atoms, stress=True)
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-12), k


# -- Hydra presets -----------------------------------------------------------------------------------
def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


@pytest.mark.parametrize("preset, element, shifts", [("pinn_ta", "Ta", [2.0, 2.5, 3.0, 3.5, 4.0, 4.5]),
                                                     ("pinn_mo", "Mo", [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])])
def test_pinn_presets_with_gaussian_legendre_compose_and_build(preset, element, shifts):
    from hydra.utils import instantiate

    cfg = compose(f"experiment={preset}", "descriptor=gaussian_legendre", f"elements=[{element}]")
    d = instantiate(cfg.descriptor)
    assert isinstance(d, GaussianLegendre) and d.cutoff == 5.0 and d.l == [0, 1, 2, 4, 6]
    assert d.n_features == len(d.r0) * 5
    head = instantiate(cfg.model, n_features_per_element=d.n_features_per_element)
    assert isinstance(head, PINN) and head.cutoff == 5.0
    # the preset itself still uses its ACSF grid
    acsf = compose(f"experiment={preset}", f"elements=[{element}]").descriptor
    assert acsf._target_.endswith("build_acsf") and acsf.angular.rc == 4.5
    assert list(acsf.radial[1].rs) == shifts


def test_mlpot_train_pinn_with_gaussian_legendre(tiny_data, tmp_path):
    """``mlpot-train model=pinn descriptor=gaussian_legendre`` end to end (a few steps), export, reload."""
    from mlpot.export import load, read_info
    from mlpot.train import run

    cfg = compose(f"run_dir={tmp_path / 'run'}", f"data.path={tiny_data}", "model=pinn", "descriptor=gaussian_legendre",
                  "dtype=float64", "cutoff=3.6", "descriptor.r0=[2.0,2.6,3.2]", "descriptor.l=[0,2,4]",
                  "model.hidden=[6]", "model.baseline.epochs=1", "model.baseline.batch_size=8",
                  "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.batch_size=8")
    metrics = run(cfg)
    assert math.isfinite(metrics["test/forces_rmse"])
    info = read_info(tmp_path / "run" / "model.pt")
    assert info["descriptor"]["class"] == "GaussianLegendre" and info["head"]["class"] == "PINN"
    pot = load(tmp_path / "run" / "model.pt")
    atoms = random_cell(["Cu", "Cu", "Cu"], a=3.0, seed=7)
    assert torch.isfinite(pot.predict(atoms)["forces"]).all()
