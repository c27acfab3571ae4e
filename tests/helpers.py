"""Small builders shared by the tests (no fixtures: plain functions)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from mlpot.descriptors import build_acsf
from mlpot.models import HDNNP, Potential


def random_potential(elements, types=(2, 3, 9), cutoff=4.5, cutoff_function="cos", alpha=0.0, seed=0,
                     hidden=(10, 10), activation="tanh"):
    """A float64 HDNNP with random weights and a few symmetry functions of the given types."""
    torch.manual_seed(seed)
    functions = []
    if 2 in types:
        functions += [{"type": 2, "eta": eta, "rs": rs} for eta, rs in ((0.5, 0.0), (1.0, 2.0), (0.2, 1.0))]
    for t in (3, 9):
        if t in types:
            functions += [{"type": t, "eta": eta, "zeta": z, "lambda": lam, "rs": rs}
                          for eta, z, lam, rs in ((0.05, 1.0, 1.0, 0.0), (0.1, 2.0, -1.0, 0.5), (0.02, 4.0, 1.0, 0.0))]
    d = build_acsf(elements, cutoff=cutoff, cutoff_function=cutoff_function, alpha=alpha, functions=functions)
    head = HDNNP(d.n_features_per_element, hidden, activation, e0=[-1.0 - k for k in range(len(elements))])
    pot = Potential(elements, d, head).double()
    # non-trivial scaling so that the scaler is exercised
    n_el, F = pot.scaler.a.shape
    g = torch.Generator().manual_seed(seed)
    pot.scaler.a.copy_(0.5 + torch.rand(n_el, F, generator=g, dtype=torch.float64))
    pot.scaler.b.copy_(torch.randn(n_el, F, generator=g, dtype=torch.float64) * 0.1)
    return pot


def random_cell(symbols, a=3.4, seed=0, rattle=0.15, pbc=True, shear=0.1):
    """A small triclinic periodic structure with rattled positions."""
    rng = np.random.default_rng(seed)
    n = len(symbols)
    cell = np.eye(3) * a + rng.uniform(-shear, shear, (3, 3)) * a
    frac = (np.arange(n)[:, None] + rng.uniform(0, 1, (n, 3))) / n
    atoms = Atoms(symbols, scaled_positions=frac % 1.0, cell=cell, pbc=pbc)
    atoms.positions += rng.normal(0, rattle, (n, 3))
    return atoms


def rotated_and_moved(atoms, angles=(0.4, -0.9, 1.7), shift=(1.3, -0.7, 2.2), seed=0):
    """Two copies of ``atoms`` that an invariant model must not tell apart: one rotated with its cell
    (positions and cell times R^T), one with the atoms permuted, shifted and wrapped back into the cell.
    Returns (rotated, R, moved, perm)."""
    from scipy.spatial.transform import Rotation

    R = Rotation.from_euler("xyz", list(angles)).as_matrix()
    rot = atoms.copy()
    rot.positions, rot.cell = atoms.positions @ R.T, atoms.cell.array @ R.T
    perm = np.random.default_rng(seed).permutation(len(atoms))
    moved = atoms[perm]
    moved.positions += list(shift)
    moved.wrap()
    return rot, R, moved, perm


def check_invariances(pot, atoms, tol=1e-10):
    """Energy and forces of ``pot`` unchanged (forces rotated/permuted with the atoms) under rotation,
    permutation and translation (``rotated_and_moved``)."""
    ref = pot.predict(atoms)
    rot, R, moved, perm = rotated_and_moved(atoms)
    for other, F in ((rot, ref["forces"].numpy() @ R.T), (moved, ref["forces"].numpy()[perm])):
        out = pot.predict(other)
        assert abs(out["energy"].item() - ref["energy"].item()) < tol
        np.testing.assert_allclose(out["forces"].numpy(), F, atol=tol)


def check_pair_jacobian(d, g, vec, step=1):
    """``d.jacobian`` gives ``d.from_edges``'s G, and J[:, f] is the autograd derivative of Σ_i G[i, f]
    with respect to the pair vectors (every ``step``-th feature f)."""
    G, J = d.jacobian(vec, g.species, g.edge_index)
    vv = vec.clone().requires_grad_(True)
    Gv = d.from_edges(vv, g.species, g.edge_index)
    assert torch.allclose(G, Gv.detach(), atol=1e-13)
    for f in range(0, d.n_features, step):
        (grad,) = torch.autograd.grad(Gv[:, f].sum(), vv, retain_graph=True)
        assert torch.allclose(grad, J[:, f], atol=1e-12 * (1 + grad.abs().max()))


def cached_and_forward(pot, frames):
    """Energy, forces and stress of ``frames`` by the cached-Jacobian path (stored descriptors and blocked pair
    Jacobians, float64) and by ``Potential.forward``: (cached, forward) prediction dicts."""
    from mlpot.data import atoms_to_graph
    from mlpot.data.frames import set_label
    from mlpot.data.jacobians import collate, jacobian_records

    for f in frames:
        set_label(f, "energy", 0.0)
    batch = collate(jacobian_records(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64))
    got = pot.forward_cached(batch, forces=True, stress=True, with_delta=True)
    ref = pot(atoms_to_graph(frames, pot.elements, pot.cutoff), forces=True, stress=True)
    return got, ref


def train_config(run_dir, data_path, *overrides):
    """The composed ``train`` config for a short run on tiny data (later overrides win)."""
    from hydra import compose, initialize_config_dir

    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[
            f"run_dir={run_dir}", f"data.path={data_path}", f"data.cache_dir={run_dir}_cache", "data.batch_size=4",
            "trainer.max_epochs=3",
            "trainer.enable_progress_bar=false", "descriptor.cutoff=4.0", "descriptor.angular.rc=3.5",
            "model.hidden=[8,8]", *overrides])


def tiny_evaluate_config(potential, output_dir, liquid_steps: int, frame_interval: int):
    """The composed ``evaluate`` config of the quick suite cut to seconds (later sections on 1-4-atom cells)."""
    from hydra import compose, initialize_config_dir

    from mlpot.evaluate.app import EVALUATE_CONF_DIR

    with initialize_config_dir(config_dir=EVALUATE_CONF_DIR, version_base="1.3"):
        return compose("evaluate", overrides=[
            f"potential={potential}", "reference=emt", f"output_dir={output_dir}", "evaluate/suite=quick",
            "suite.eos.n_points=5", "suite.surfaces.millers=[111]", "suite.surfaces.min_thickness=5.0",
            "suite.surfaces.size=[1,1]", "suite.surfaces.steps=3", "suite.vacancy.repeat=[1,1,1]",
            "suite.vacancy.steps=3", "suite.elastic.relax=false", "suite.nve.steps=10", "suite.nve.equil_steps=0",
            "suite.nve.repeat=[1,1,1]", "suite.liquid.repeat=[2,2,2]", "suite.liquid.melt.heat_steps=5",
            "suite.liquid.melt.equil_steps=5", "suite.liquid.equil_steps=0", f"suite.liquid.steps={liquid_steps}",
            f"suite.liquid.frame_interval={frame_interval}", "suite.liquid.rdf.rmax=3.5", "suite.liquid.rdf.nbins=35"])
