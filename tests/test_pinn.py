"""PINN head (docs/science.md §7): the BOP against a NumPy reference written here with plain loops,
finite-difference forces and stress (float64), export round trip, parameter ranges, training path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from mlpot.data import atoms_to_graph
from mlpot.descriptors import build_acsf
from mlpot.errors import ParameterRangeError
from mlpot.models import PINN, Potential
from mlpot.models.bop import PARAMETERS, bop_energies, check_parameters
from mlpot.models.pinn import DEFAULT_P0 as DEFAULT
from tests.helpers import cached_and_forward, random_cell
from tests.test_derivatives import check_forces_and_stress

RC, D = 4.2, 1.3


pytestmark = pytest.mark.usefixtures("one_thread")


P0 = [  # two elements with different baselines: checks that every parameter is the centre atom's
    {"A": 7.5, "alpha": 2.6, "B": 4.8, "beta": 1.4, "h": -0.35, "sigma": 1.1, "a": 0.25, "lambda": 1.2},
    {"A": 8.2, "alpha": 2.9, "B": 5.3, "beta": 1.7, "h": 0.2, "sigma": 0.7, "a": 0.6, "lambda": 0.8},
]


# -- the reference: plain NumPy loops over atoms, neighbours and screening atoms -----------------
def _fc(r):
    return (RC - r) ** 4 / (D**4 + (RC - r) ** 4) if r < RC else 0.0


def reference_energies(atoms, params):
    """E_i of docs/science.md §7 with per-atom parameters params[i] = (A, α, B, β, h, σ, a, λ)."""
    ii, jj, dd = neighbor_list("ijD", atoms, RC)
    out = np.zeros(len(atoms))
    for i in range(len(atoms)):
        A, alpha, B, beta, h, sigma, a, lam = params[i]
        vecs = [dd[p] for p in range(len(ii)) if ii[p] == i and np.linalg.norm(dd[p]) < RC]
        n = len(vecs)
        r = [np.linalg.norm(v) for v in vecs]
        S = np.ones(n)
        for j in range(n):
            for k in range(n):
                if k != j:
                    x = r[k] + np.linalg.norm(vecs[k] - vecs[j]) - r[j]
                    S[j] *= 1.0 - _fc(x) * math.exp(-lam * x)
        rho = 0.0
        for j in range(n):
            z = 0.0
            for k in range(n):
                if k != j:
                    cos = np.dot(vecs[j], vecs[k]) / (r[j] * r[k])
                    z += a * S[k] * _fc(r[k]) * (cos - h) ** 2
            b = (1.0 + z) ** -0.5
            out[i] += 0.5 * (math.exp(A - alpha * r[j]) - S[j] * b * math.exp(B - beta * r[j])) * _fc(r[j])
            rho += S[j] * b * _fc(r[j])
        out[i] -= sigma * math.sqrt(rho)
    return out


def configurations():
    rng = np.random.default_rng(3)
    tri = Atoms("TaMoTa", positions=[[0, 0, 0], [2.6, 0, 0], [1.1, 2.2, 0.3]])
    tet = Atoms("TaTaMoMo", positions=[[0, 0, 0], [2.7, 0.1, 0], [1.3, 2.4, 0], [1.4, 0.8, 2.3]])
    five = Atoms("MoTaTaMoTa", positions=rng.uniform(0, 3.6, (5, 3)))
    while min(five.get_distances(i, range(5), mic=False)[i + 1 :].min() for i in range(4)) < 1.8:
        five.positions = rng.uniform(0, 3.6, (5, 3))
    line = Atoms("TaTaTa", positions=[[0, 0, 0], [2.5, 0, 0], [5.0, 0, 0]])  # k between i and j: strong screening
    cell = random_cell(["Ta", "Mo", "Ta"], a=3.3, seed=4, rattle=0.1)  # periodic: images are neighbours too
    return {"triangle": tri, "tetrahedron": tet, "five": five, "line": line, "periodic": cell}


def make_pinn(seed=0, random_net=False, dtype=torch.float64, elements=("Ta", "Mo")):
    torch.manual_seed(seed)
    d = build_acsf(list(elements), cutoff=RC, radial={"eta": [0.3, 1.0]},
                   angular={"type": 9, "eta": [0.1], "zeta": [1, 2], "lambda": [1, -1]})
    head = PINN(d.n_features_per_element, hidden=(6,), cutoff=RC, d=D, p0=P0[: len(elements)],
                e0=[-0.5, -0.25][: len(elements)])
    if random_net:
        for net in head.nets.nets:
            torch.nn.init.normal_(net[-1].weight, std=0.3)
            torch.nn.init.normal_(net[-1].bias, std=0.1)
    return Potential(list(elements), d, head).to(dtype)


@pytest.mark.parametrize("name", list(configurations()))
def test_zero_delta_equals_numpy_reference(name):
    atoms = configurations()[name]
    pot = make_pinn()
    out = pot.predict(atoms, forces=False)
    species = [0 if s == "Ta" else 1 for s in atoms.get_chemical_symbols()]
    params = np.array([[P0[s][p] for p in PARAMETERS] for s in species])
    ref = reference_energies(atoms, params) + np.array([[-0.5, -0.25][s] for s in species])
    got = out["atomic_energies"].numpy()
    assert np.abs(ref).max() > 0.1  # a meaningful comparison
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)


def test_per_atom_parameters_against_reference():
    """bop_energies with a different parameter set on every atom (the network's δp)."""
    atoms = configurations()["five"]
    rng = np.random.default_rng(7)
    base = np.array([P0[0][p] for p in PARAMETERS])
    params = base * (1 + 0.2 * rng.uniform(-1, 1, (len(atoms), 8)))
    graph = atoms_to_graph(atoms, ["Ta", "Mo"], RC)
    from mlpot.descriptors.geometry import edge_vectors

    vec = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    got = bop_energies(vec, graph.edge_index, torch.tensor(params), len(atoms), RC, D).numpy()
    np.testing.assert_allclose(got, reference_energies(atoms, params), rtol=0, atol=1e-10)


def test_isolated_atom_and_dimer():
    pot = make_pinn()
    lone = pot.predict(Atoms("Ta", positions=[[0, 0, 0]]), forces=True)
    assert float(lone["energy"][0]) == pytest.approx(-0.5, abs=1e-14)  # e0 only, no NaN
    assert torch.isfinite(lone["forces"]).all()
    far = pot.predict(Atoms("TaTa", positions=[[0, 0, 0], [RC + 0.1, 0, 0]]), forces=True)
    assert float(far["forces"].abs().max()) == 0.0


@pytest.mark.parametrize("case", ["baseline", "network"])
def test_finite_difference_forces_and_stress(case):
    pot = make_pinn(seed=1, random_net=case == "network")
    check_forces_and_stress(pot, random_cell(["Ta", "Mo", "Ta", "Ta"], a=3.4, seed=2, rattle=0.12))


def test_float32_matches_float64():
    atoms = random_cell(["Ta", "Mo", "Ta"], a=3.3, seed=5)
    e64 = make_pinn(random_net=True).predict(atoms)
    e32 = make_pinn(random_net=True, dtype=torch.float32).predict(atoms)
    assert e32["energy"].dtype == torch.float32
    assert torch.allclose(e32["energy"].double(), e64["energy"], rtol=1e-5, atol=1e-4)
    assert torch.allclose(e32["forces"].double(), e64["forces"], atol=1e-3)


def test_network_output_corrects_parameters_and_stays_in_range():
    pot = make_pinn(random_net=True)
    head = pot.head
    for net in head.nets.nets:  # drive every raw output far negative
        torch.nn.init.zeros_(net[-1].weight)
        torch.nn.init.constant_(net[-1].bias, -50.0)
    x = torch.randn(6, head.nets.n_in[0], dtype=torch.float64)
    species = torch.tensor([0, 1, 0, 1, 0, 0])
    p, delta = head.atom_parameters(x, species)
    check_parameters(p)  # α, β, a, λ still ≥ 0
    assert (p[:, [1, 3, 6, 7]] >= 0).all() and (p[:, 0] < -40).all()
    assert torch.allclose(p - delta, head.p0()[species])
    assert float(head.penalty(delta).detach()) > 0


def test_out_of_range_parameters_are_reported():
    d = build_acsf(["Ta"], cutoff=RC, radial={"eta": [0.5]})
    with pytest.raises(ParameterRangeError, match="alpha = -1 must be > 0"):
        PINN(d.n_features_per_element, p0={"alpha": -1.0})
    with pytest.raises(ParameterRangeError, match="lambda = 0 must be > 0"):
        PINN(d.n_features_per_element, p0={"lambda": 0.0})
    with pytest.raises(ValueError, match="unknown p0 parameter"):
        PINN(d.n_features_per_element, p0={"gamma": 1.0})
    bad = torch.tensor([[1.0, 2.0, 1.0, 1.0, 0.0, 1.0, -0.1, 1.0]])
    with pytest.raises(ParameterRangeError, match="a = -0.1 at row 0 must be >= 0"):
        check_parameters(bad)
    with pytest.raises(ValueError, match="exceeds the descriptor cutoff"):
        Potential(["Ta"], d, PINN(d.n_features_per_element, cutoff=RC + 1))


def test_export_round_trip_and_calculator(tmp_path):
    from mlpot.calculator import MLPotCalculator
    from mlpot.export import load, read_info, save

    pot = make_pinn(random_net=True)
    with torch.no_grad():
        pot.head.u0.add_(0.05)  # a "fitted" p0 that differs from the config's
        pot.head.e0.add_(0.1)
    path = save(pot, tmp_path / "model.pt")
    assert read_info(path)["head"]["class"] == "PINN"
    back = load(path)
    atoms = random_cell(["Ta", "Mo", "Ta"], a=3.3, seed=8)
    a, b = pot.predict(atoms, stress=True), back.predict(atoms, stress=True)
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-12), k
    atoms.calc = MLPotCalculator(path)
    assert atoms.get_potential_energy() == pytest.approx(float(a["energy"][0]), abs=1e-10)


def test_older_mlpot_refuses_a_pinn_export(tmp_path, monkeypatch):
    """An mlpot without the PINN head (simulated by unregistering it) gives a clear format error."""
    from mlpot import export

    path = export.save(make_pinn(), tmp_path / "model.pt")
    monkeypatch.delitem(export.HEADS, "PINN")
    with pytest.raises(export.ModelFormatError, match=r"model\.pt: unknown head class 'PINN'.*upgrade mlpot"):
        export.load(path)


def test_cached_path_equals_potential_forward():
    """The training path (cached pair vectors and Jacobians) gives Potential.forward's E, F, σ."""
    pot = make_pinn(random_net=True)
    got, ref = cached_and_forward(pot, [random_cell(["Ta", "Mo", "Ta"], a=3.3, seed=s) for s in range(3)])
    for k in ("energy", "forces", "stress"):
        assert torch.allclose(got[k], ref[k], rtol=0, atol=1e-10), k
    assert got["penalty"] > 0 and got["delta"].shape == (9, 8)


def test_stage1_fits_p0_to_a_known_bop():
    """Data made by a BOP with known p⁰: stage 1 recovers its energies from a perturbed start."""
    from mlpot.data.frames import set_label
    from mlpot.training.baseline import fit_baseline
    from mlpot.data.jacobians import collate, jacobian_records
    from mlpot.training.losses import LossWeights

    truth = make_pinn(elements=("Ta",))
    frames = []
    rng = np.random.default_rng(0)
    for s in range(12):  # small clusters, compressed and stretched (few triplets: fast)
        base = np.array([[0, 0, 0], [1, 0, 0], [0.5, 0.87, 0], [0.5, 0.29, 0.82]])
        atoms = Atoms("Ta4", positions=(2.3 + 0.08 * s) * base + rng.normal(0, 0.08, (4, 3)))
        out = truth.predict(atoms)
        set_label(atoms, "energy", float(out["energy"][0]))
        set_label(atoms, "forces", out["forces"].numpy())
        frames.append(atoms)
    start = dict(P0[0], A=7.0, beta=1.6, sigma=0.9)
    torch.manual_seed(0)
    d = truth.descriptor
    pot = Potential(["Ta"], d, PINN(d.n_features_per_element, hidden=(6,), cutoff=RC, d=D, p0=start)).double()
    records = jacobian_records(d, frames, ["Ta"], RC, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)

    class Permutations(torch.utils.data.Sampler):  # a new permutation of the frames each epoch
        def __iter__(self):
            return iter(torch.randperm(len(records), generator=gen).tolist())

        def __len__(self):
            return len(records)

    def loader(shuffle, bs):
        sampler = Permutations() if shuffle else None
        return torch.utils.data.DataLoader(records, batch_size=bs, sampler=sampler, collate_fn=collate)

    hist = fit_baseline(pot, loader, LossWeights(energy=10.0, forces=1.0), epochs=25, lr=0.03, batch_size=6)
    assert hist[-1] < 0.05 * hist[0], hist
    assert not pot.head.u0.requires_grad and not pot.head.e0.requires_grad  # frozen for stage 2
    assert all(float(net[-1].weight.abs().sum()) == 0.0 for net in pot.head.nets.nets)  # networks untouched


def test_mlpot_train_model_pinn(tmp_path):
    """``mlpot-train model=pinn`` end to end on tiny EMT Cu data: stage 1, stage 2, export, reload."""
    from hydra import compose, initialize_config_dir

    from mlpot.data.builtin import generate_emt_cu
    from mlpot.export import load, read_info
    from mlpot.train import CONF_DIR, run

    data = generate_emt_cu(tmp_path / "emt.extxyz", n_frames_per_traj=4, repeat=1, equil_steps=8, heat_steps=20,
                           melt_equil_steps=8, n_strained=0, n_frames_surface=0, n_frames_vacancy=0)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"run_dir={tmp_path / 'run'}", f"data.path={data}", "model=pinn", "dtype=float64", "cutoff=3.6",
            "descriptor.angular.rc=3.0", "model.hidden=[6]", "model.baseline.epochs=3", "model.baseline.batch_size=4",
            "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "data.batch_size=4"])
    metrics = run(cfg)
    assert math.isfinite(metrics["test/forces_rmse"]) and math.isfinite(metrics["test/energy_per_atom_rmse"])
    info = read_info(tmp_path / "run" / "model.pt")
    assert info["head"]["class"] == "PINN" and info["head"]["config"]["cutoff"] == 3.6
    pot = load(tmp_path / "run" / "model.pt")
    start = torch.tensor([[DEFAULT[p] for p in PARAMETERS]], dtype=torch.float64)
    assert not torch.allclose(pot.head.p0(), start)  # stage 1 moved p0
    assert any(float(net[-1].weight.abs().sum()) > 0 for net in pot.head.nets.nets)  # stage 2 trained the networks
