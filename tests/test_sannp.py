"""SANNP: the staged E_i -> forces schedule (switch, checkpoint/resume) and the SANNP descriptor
(finite differences, Jacobian against autograd, a direct NumPy reference, invariances, export)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from mlpot.train import CONF_DIR, run
from tests.helpers import train_config


def config(run_dir, data_path, *overrides):
    return train_config(run_dir, data_path, "loss=sannp", "callbacks=sannp", "export=false", *overrides)


def stages(run_dir):
    return [row["stage"] for row in json.loads((Path(run_dir) / "history.json").read_text())]


@pytest.fixture(scope="module")
def staged_run(tiny_data, tmp_path_factory):
    """3 epochs, switch after 2 (stage1_epochs=2)."""
    run_dir = tmp_path_factory.mktemp("staged")
    metrics = run(config(run_dir, tiny_data, "trainer.max_epochs=3", "callbacks.sannp_schedule.stage1_epochs=2"))
    return run_dir, metrics


def test_stage_switch_resets_monitors(staged_run):
    run_dir, metrics = staged_run
    assert stages(run_dir) == [1, 1, 2]  # switch at the end of epoch 1 (0-based)
    for key in ("test/atomic_energies_rmse", "test/forces_rmse", "test/energy_per_atom_rmse"):
        assert key in metrics
    assert json.loads((run_dir / "metrics.json").read_text())["stage"] == 2
    history = json.loads((run_dir / "history.json").read_text())
    assert history[0]["val/loss"] == pytest.approx(history[0]["val/atomic_energies_rmse"] ** 2, rel=1e-6)  # E_i only
    for row in history[1:]:  # the switch epoch's val/loss recomputed with the stage-2 weights (loss=sannp)
        h = {k: row[f"val/{k}_rmse"] ** 2 for k in ("atomic_energies", "forces", "energy_per_atom")}
        stage2 = 10 * h["atomic_energies"] + h["forces"] + 10 * h["energy_per_atom"]
        assert row.get("val/loss_stage2", row["val/loss"]) == pytest.approx(stage2, rel=1e-6)
    # the best checkpoint is a stage-2 model (stage-1 val/loss, E_i only, would otherwise always win)
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["epoch"] >= 1
    state = next(v for k, v in best["callbacks"].items() if "StagedSchedule" in k)
    assert state["stage"] == 2 and state["switch_epoch"] == 1


def test_resume_in_stage_two(staged_run, tiny_data, tmp_path):
    """Killed in stage 2, resumed from last.ckpt with a schedule that would never switch by itself
    (patience 1000, no epoch limit): the resumed epochs are stage 2 with the stage-2 loss."""
    run_dir, _ = staged_run
    run(config(tmp_path, tiny_data, "trainer.max_epochs=4", "callbacks.sannp_schedule.stage1_epochs=null",
               "callbacks.sannp_schedule.patience=1000", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"))
    assert stages(tmp_path) == [1, 1, 2, 2]  # the history covers the whole run; the resumed epoch is stage 2
    row = json.loads((tmp_path / "history.json").read_text())[-1]
    assert row["val/loss"] > 5 * row["val/atomic_energies_rmse"] ** 2  # stage 1 would give exactly 1x


def test_plateau_switch_and_monitor_reset():
    """The schedule on its own (a stand-in trainer): the switch comes after `patience` epochs without a
    relative improvement > min_delta; early stopping, the best checkpoint and ReduceLROnPlateau are reset;
    the learning rate goes back to its start; the switch epoch's val/loss is recomputed."""
    from types import SimpleNamespace

    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from mlpot.training.losses import LossWeights
    from mlpot.training.schedule import StagedSchedule

    sched = StagedSchedule(patience=2, min_delta=0.01, verbose=False)
    module = SimpleNamespace(weights=LossWeights(energy=10, forces=1, stress=0, atomic_energies=10), history=[])
    es = EarlyStopping(monitor="val/loss")
    ckpt = ModelCheckpoint(monitor="val/loss")
    es.best_score, es.wait_count = torch.tensor(1e-4), 3
    ckpt.best_model_path, ckpt.best_model_score = "best.ckpt", torch.tensor(1e-4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    plateau.best, plateau.num_bad_epochs = 1e-4, 5
    w = torch.nn.Parameter(torch.ones(2))
    lbfgs = torch.optim.LBFGS([w])
    lbfgs.step(lambda: (w**2).sum().backward() or (w**2).sum())
    assert lbfgs.state  # curvature history of the stage-1 objective
    trainer = SimpleNamespace(sanity_checking=False, callbacks=[es, ckpt], optimizers=[opt, lbfgs], should_stop=False,
                              lr_scheduler_configs=[SimpleNamespace(scheduler=plateau)], current_epoch=0,
                              callback_metrics={})
    sched.on_fit_start(trainer, module)
    assert vars(module.weights) == {"energy": 0.0, "forces": 0.0, "stress": 0.0, "atomic_energies": 1.0}
    sched.on_train_start(trainer, module)
    opt.param_groups[0]["lr"] = 0.01  # decayed during stage 1
    values = [0.10, 0.05, 0.0499, 0.0498]  # the last two improve by less than 1 %: switch after epoch 3
    for epoch, v in enumerate(values):
        module.epoch_row = {}  # the module's row of this epoch (appended to its history at the training epoch's end)
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val/atomic_energies_rmse": torch.tensor(v), "val/loss": torch.tensor(v * v),
                                    "val/forces_rmse": torch.tensor(0.2), "val/energy_per_atom_rmse": torch.tensor(0.01)}
        sched.on_validation_end(trainer, module)
        assert sched.stage == (2 if epoch == 3 else 1), epoch
        module.history.append({"epoch": epoch, **module.epoch_row})
    assert [h["stage"] for h in module.history] == [1, 1, 1, 1] and sched.switch_epoch == 3
    assert "val/loss_stage2" in module.history[3]
    assert vars(module.weights) == {"energy": 10, "forces": 1, "stress": 0, "atomic_energies": 10}
    expected = 10 * 0.0498**2 + 0.2**2 + 10 * 0.01**2
    assert float(trainer.callback_metrics["val/loss"]) == pytest.approx(expected, rel=1e-5)
    assert es.wait_count == 0 and torch.isinf(es.best_score)
    assert torch.isinf(ckpt.best_model_score) and ckpt.kth_best_model_path == "best.ckpt"
    assert plateau.num_bad_epochs == 0 and math.isinf(plateau.best) and opt.param_groups[0]["lr"] == 0.1
    assert not lbfgs.state  # L-BFGS starts stage 2 without the stage-1 history
    state = sched.state_dict()
    fresh = StagedSchedule(patience=1000, verbose=False)
    fresh.load_state_dict(state)
    fresh.on_fit_start(trainer, SimpleNamespace(weights=LossWeights(energy=1, forces=2, atomic_energies=3)))
    assert fresh.stage == 2


# --- the SANNP descriptor ---------------------------------------------------------------------------

from ase import Atoms  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402

from mlpot.data import atoms_to_graph  # noqa: E402
from mlpot.descriptors.geometry import edge_vectors  # noqa: E402
from mlpot.descriptors.sannp import SANNP, bumps, grid_edges  # noqa: E402
from mlpot.models import HDNNP, Potential  # noqa: E402
from tests.helpers import random_cell  # noqa: E402
from tests.test_derivatives import check_forces_and_stress  # noqa: E402

SMALL = dict(cutoff=4.0, n_pair=5, n_three=3, n_jk=4, r_min=1.2)


def sannp_potential(elements, seed=0, **kw):
    torch.manual_seed(seed)
    d = SANNP(elements, **{**SMALL, **kw})
    head = HDNNP(d.n_features_per_element, (8,), "tanh", e0=[-1.0 - k for k in range(len(elements))])
    pot = Potential(elements, d, head).double()
    g = torch.Generator().manual_seed(seed)  # scale the (large) triangle features to O(1) inputs
    pot.scaler.a.copy_(0.05 + 0.1 * torch.rand(pot.scaler.a.shape, generator=g, dtype=torch.float64))
    return pot


def features(desc, atoms):
    g = atoms_to_graph(atoms, desc.elements, desc.cutoff, dtype=torch.float64)
    return desc(g.positions, g.species, g.edge_index, g.shifts, g.cell, g.batch)


def reference_features(desc, atoms):
    """Direct loops over neighbours and neighbour pairs (NumPy), from the definitions in the module doc."""
    el = {s: k for k, s in enumerate(desc.elements)}
    n_el, n3, C = len(el), desc.n_three, desc.n_jk
    e2, e3, ejk = (t.numpy() for t in (desc.edges2, desc.edges3, desc.edges_jk))

    def phi(r, e):
        out = np.zeros(len(e) - 2)
        for k in range(len(e) - 2):
            x = (r - e[k]) / (e[k + 2] - e[k])
            if 0 < x < 1:
                out[k] = 0.5 * (np.cos(2 * np.pi * (x - 0.5)) + 1)
        return out

    ii, jj, D = neighbor_list("ijD", atoms, desc.cutoff)
    sym = atoms.get_chemical_symbols()
    out = []
    for a in range(len(atoms)):
        nb = [(el[sym[j]], d) for i, j, d in zip(ii, jj, D) if i == a]
        pair = np.zeros((n_el, desc.n_pair))
        S = np.zeros((n_el * n3, n_el * n3, C))
        for zj, dj in nb:
            pair[zj] += phi(np.linalg.norm(dj), e2)
        for x, (zj, dj) in enumerate(nb):
            for y, (zk, dk) in enumerate(nb):
                rj, rk = np.linalg.norm(dj), np.linalg.norm(dk)
                if x == y or rj >= desc.three_body_cutoff or rk >= desc.three_body_cutoff:
                    continue
                fj, fk = np.zeros(n_el * n3), np.zeros(n_el * n3)
                fj[zj * n3 : (zj + 1) * n3], fk[zk * n3 : (zk + 1) * n3] = phi(rj, e3), phi(rk, e3)
                S += fj[:, None, None] * fk[None, :, None] * phi(np.linalg.norm(dk - dj), ejk)[None, None, :]
        iu, iv = np.triu_indices(n_el * n3)
        out.append(np.concatenate([pair.ravel(), S[iu, iv].ravel()]))
    return np.array(out)


def test_default_length_and_grid():
    d = SANNP(["Cu"])
    assert d.n_features == 24 + 28 * 10 == 304
    e = grid_edges(1.0, 6.0, 24)
    assert e[0] == 1.0 and e[-1] == pytest.approx(6.0) and torch.all(torch.diff(torch.diff(e)) > 0)  # log: widening
    r = torch.linspace(1.21, 5.79, 50, dtype=torch.float64)  # between g_1 and g_n: a partition of unity
    assert torch.allclose(bumps(r, grid_edges(1.0, 6.0, 24, "linear")).sum(1), torch.ones(50, dtype=torch.float64))
    with pytest.raises(ValueError):
        SANNP(["Cu"], cutoff=4.0, three_body_cutoff=5.0)


@pytest.mark.parametrize("three_body_cutoff", [None, 3.2])
def test_against_direct_loops(three_body_cutoff):
    desc = SANNP(["Cu", "S"], three_body_cutoff=three_body_cutoff, **SMALL).double()
    atoms = random_cell(["Cu", "S", "Cu", "Cu", "S"], a=3.6, seed=1)
    got = features(desc, atoms).detach().numpy()
    ref = reference_features(desc, atoms)
    assert np.abs(ref).max() > 1.0 and np.abs(ref[:, desc.n_pair_features:]).max() > 1.0
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_jacobian_equals_autograd():
    """Σ_f W[i(p), f] J[p, f] equals the autograd gradient of Σ W ⊙ G with respect to r_p, for random W
    (G_i depends on the pairs centred on i only, so this checks every entry of J)."""
    desc = SANNP(["Cu", "S"], three_body_cutoff=3.5, **SMALL).double()
    atoms = random_cell(["Cu", "S", "Cu", "Cu", "S"], a=3.6, seed=2)
    g = atoms_to_graph(atoms, desc.elements, desc.cutoff, dtype=torch.float64)
    vec = edge_vectors(g.positions, g.edge_index, g.shifts, g.cell, g.batch).detach()
    G, J = desc.jacobian(vec, g.species, g.edge_index, chunk=64, triplet_chunk=256)  # several chunks
    torch.testing.assert_close(G, desc.from_edges(vec, g.species, g.edge_index), rtol=0, atol=1e-12)
    assert J.abs().max() > 1.0 and J[:, desc.n_pair_features:].abs().max() > 1.0
    i = g.edge_index[0]
    for seed in range(3):
        W = torch.randn(G.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        v = vec.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((W * desc.from_edges(v, g.species, g.edge_index)).sum(), v)
        torch.testing.assert_close(torch.einsum("pf,pfk->pk", W[i], J), grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("elements, symbols", [(["Li", "Si"], ["Li", "Si", "Li", "Si"])])
def test_finite_differences(elements, symbols):
    pot = sannp_potential(elements, seed=3, three_body_cutoff=3.6)
    check_forces_and_stress(pot, random_cell(symbols, a=3.4, seed=4))


def test_invariances():
    desc = SANNP(["Cu", "S"], **SMALL).double()
    atoms = random_cell(["Cu", "S", "Cu", "Cu", "S"], a=3.6, seed=5)
    ref = features(desc, atoms)
    from scipy.spatial.transform import Rotation

    rot = atoms.copy()
    R = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    rot.set_cell(atoms.cell.array @ R.T, scale_atoms=True)
    torch.testing.assert_close(features(desc, rot), ref, rtol=1e-10, atol=1e-10)
    moved = atoms.copy()
    moved.positions += [0.7, -2.3, 5.1]
    moved.wrap()
    torch.testing.assert_close(features(desc, moved), ref, rtol=1e-10, atol=1e-10)
    perm = np.random.default_rng(0).permutation(len(atoms))
    torch.testing.assert_close(features(desc, atoms[perm]), ref[perm], rtol=1e-10, atol=1e-10)


def test_export_roundtrip(tmp_path):
    from mlpot.export import load, save

    pot = sannp_potential(["Li", "Si"], seed=6)
    atoms = random_cell(["Li", "Si", "Li", "Li"], a=3.5, seed=7)
    save(pot, tmp_path / "model.pt")
    loaded = load(tmp_path / "model.pt")
    assert isinstance(loaded.descriptor, SANNP) and loaded.descriptor.config() == pot.descriptor.config()
    a, b = pot.predict(atoms, stress=True), loaded.predict(atoms, stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-12)


def test_molecule_without_cell():
    desc = SANNP(["Cu"], **SMALL).double()
    atoms = Atoms("Cu4", positions=[[0, 0, 0], [2.3, 0, 0], [0, 2.4, 0.2], [1.1, 1.0, 2.0]])
    np.testing.assert_allclose(features(desc, atoms).detach().numpy(), reference_features(desc, atoms), atol=1e-10)


def test_e0_from_atomic_energies(tmp_path):
    """A fixed composition makes the least-squares E0 degenerate; with E_i labels each element's E0 is
    the mean of its E_i (a streaming pass over the store)."""
    import ase.io

    from mlpot.data.statistics import mean_atomic_energies
    from mlpot.data.store import open_store

    frames = []
    for k in range(3):
        a = Atoms("Li3Si", positions=np.random.default_rng(k).uniform(0, 5, (4, 3)))
        a.arrays["energies"] = np.array([-191.0 - k, -191.0, -191.0, -116.0 + k])
        frames.append(a)
    ase.io.write(tmp_path / "lisi.extxyz", frames)
    store = open_store([tmp_path / "lisi.extxyz"], tmp_path / "cache")
    li, si, cu = 3, 14, 29
    assert mean_atomic_energies(store, [0, 1, 2], [li, si], [0.0, 0.0]) == pytest.approx([-191.0 - 1 / 3, -115.0])
    assert mean_atomic_energies(store, [0, 1, 2], [li, si, cu], [0.0, 0.0, 7.0])[2] == 7.0


@pytest.mark.parametrize("name, elements, kind, n_features, weight_decay",
                         [("sannp_cu", ["Cu"], "SphericalBessel", 165, 1e-4), ("sannp_lisi", ["Li", "Si"], "SANNP", 488, 0.0)])
def test_presets_compose(name, elements, kind, n_features, weight_decay):
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", "data.path=somewhere", "run_dir=x",
                                          f"elements={elements}"])
        # descriptor=<other> swaps the whole descriptor (no preset key is left over for another class)
        for other, target in (("sannp", "mlpot.descriptors.sannp.SANNP"), ("bessel", "mlpot.descriptors.bessel.SphericalBessel")):
            swapped = compose("train", overrides=[f"experiment={name}", "data.path=somewhere", f"descriptor={other}",
                                                  f"elements={elements}"])
            assert swapped.descriptor._target_ == target
            instantiate(swapped.descriptor)
        # callbacks=default drops the staged schedule (energy + forces from the start)
        plain = compose("train", overrides=[f"experiment={name}", "data.path=x", "callbacks=default"])
        assert "sannp_schedule" not in plain.callbacks
        # optim=adamw swaps the whole optimiser: no L-BFGS module (weight decay) is left over
        assert compose("train", overrides=[f"experiment={name}", "data.path=x", "optim=adamw"]).optim.get("module") is None
    assert cfg.data.split.kind == "tail" and list(cfg.data.split.fractions) == [0.8, 0.1, 0.1]
    assert "sannp_schedule" in cfg.callbacks and cfg.loss.atomic_energies > 0 and cfg.loss.forces > 0
    desc = instantiate(cfg.descriptor)
    assert type(desc).__name__ == kind and desc.n_features == n_features
    # full-batch L-BFGS with step 1: no AdamW learning rate in the preset to leak into L-BFGS's step
    assert cfg.optim.optimizer._target_ == "torch.optim.LBFGS" and cfg.optim.optimizer.lr == 1.0
    assert cfg.optim.module.weight_decay == weight_decay
    assert cfg.optim.module._target_ == "mlpot.training.optim.LBFGSModule"  # full batch, read in batches
