"""The two force paths: on-the-fly autograd (``Potential.forward`` with ``create_graph``) and stored
element-blocked pair Jacobians (``Potential.forward_cached``) give the same loss and parameter gradients
(float64, 1e-10) for every descriptor family; the switch and its automatic choice; sharding."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch

from mlpot.data.datasets import collate_graphs
from mlpot.data.frames import set_label
from mlpot.data.graph import atoms_to_graph
from mlpot.data.jacobians import collate, jacobian_records
from mlpot.training.losses import LossWeights, errors, loss
from tests.helpers import random_cell, random_potential

pytestmark = pytest.mark.usefixtures("one_thread")


def _labelled(frames, seed=0):
    rng = np.random.default_rng(seed)
    for a in frames:
        set_label(a, "energy", float(rng.normal()))
        set_label(a, "forces", rng.normal(size=(len(a), 3)))
        set_label(a, "stress", rng.normal(size=(3, 3)) * 0.01)
        set_label(a, "atomic_energies", rng.normal(size=len(a)))
    return frames


def _graph_batch(frames, elements, cutoff):
    return collate_graphs([atoms_to_graph([a], elements, cutoff) for a in frames])


def _potentials():
    from mlpot.descriptors.bessel import SphericalBessel
    from mlpot.descriptors.chebyshev import Chebyshev
    from mlpot.descriptors.concat import Concat
    from mlpot.descriptors.gaussian_legendre import GaussianLegendre
    from mlpot.descriptors.sannp import SANNP
    from mlpot.models import HDNNP, PINN, Potential

    el = ["Cu", "S"]

    def hdnnp(d):
        torch.manual_seed(1)
        return Potential(el, d, HDNNP(d.n_features_per_element, (6,), "tanh", e0=[-1.0, -2.0])).double()

    yield "acsf 2+3+9", random_potential(el, types=(2, 3, 9), cutoff=4.0, seed=3)
    yield "bessel coupled", hdnnp(SphericalBessel(el, n_max=3, cutoff=4.0, coupled=True))
    yield "chebyshev", hdnnp(Chebyshev(el, radial_order=4, radial_cutoff=4.0, angular_order=3, angular_cutoff=3.5))
    yield "sannp", hdnnp(SANNP(el, cutoff=4.0, n_pair=6, n_three=3, n_jk=3, three_body_cutoff=3.5))
    yield "concat", hdnnp(Concat([SphericalBessel(el, n_max=2, cutoff=4.0),
                                  random_potential(el, types=(2,), cutoff=3.0).descriptor]))
    torch.manual_seed(2)
    gl = GaussianLegendre(el, r0=(1.5, 2.5), l=(0, 2), cutoff=4.0, d=1.0)
    yield "pinn", Potential(el, gl, PINN(gl.n_features_per_element, hidden=(5,), cutoff=4.0, d=1.0)).double()


@pytest.mark.parametrize("name, pot", list(_potentials()), ids=lambda x: x if isinstance(x, str) else "")
def test_same_loss_and_parameter_gradients(name, pot):
    frames = _labelled([random_cell(["Cu", "S", "Cu", "S", "S"], a=3.7, seed=s) for s in range(2)]
                       + [random_cell(["Cu", "Cu", "S"], a=3.2, seed=9)])
    weights = LossWeights(energy=1.0, forces=1.0, stress=10.0, atomic_energies=0.5)
    params = [p for p in pot.parameters() if p.requires_grad]
    out = {}
    graph_batch = _graph_batch(frames, pot.elements, pot.cutoff)
    cached_batch = collate(jacobian_records(pot.descriptor, frames, pot.elements, pot.cutoff, dtype=torch.float64,
                                            chunk_bytes=5000))
    for path, batch in (("autograd", graph_batch), ("jacobian", cached_batch)):
        pred = pot.predict_batch(batch, forces=True, stress=True, create_graph=True, with_delta=True)
        value = loss(errors(pred, batch), weights) + pred.get("penalty", 0.0)
        grads = torch.autograd.grad(value, params, allow_unused=True)
        out[path] = (value.detach(), [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    (la, ga), (lj, gj) = out["autograd"], out["jacobian"]
    assert abs(float(la - lj)) <= 1e-10 * max(1.0, abs(float(la)))
    for a, b in zip(ga, gj):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert sum(float(g.abs().sum()) for g in ga) > 0


def test_every_descriptor_config_runs_on_the_fly_in_float32():
    """Every descriptor config of conf/ computes forces on the autograd path in float32 (module buffers moved
    to float32 included) within 1e-4 eV/Å of float64."""
    from ase.build import bulk
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mlpot.models import HDNNP, Potential
    from mlpot.train import CONF_DIR

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.rattle(0.1, seed=1)
    names = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONF_DIR, "descriptor", "*.yaml")))
    checked = 0
    for n in names:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"descriptor={n}", "elements=[Cu]", "run_dir=x"])
        if "path" in cfg.descriptor.keys():  # n2p2: needs a potential folder
            continue
        d = instantiate(cfg.descriptor)
        pot = Potential(["Cu"], d, HDNNP(d.n_features_per_element, (4,), "tanh"))
        f = {dt: pot.to(dt)(atoms_to_graph(atoms, ["Cu"], d.cutoff, dtype=dt), forces=True)["forces"].detach().double()
             for dt in (torch.float64, torch.float32)}
        assert float((f[torch.float32] - f[torch.float64]).abs().max()) < 1e-4, n
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("optim", ["adamw", "lbfgs"])
def test_training_on_either_path_gives_the_same_model(tiny_data, tmp_path, optim, caplog):
    """End to end in float64: ``training.forces=autograd`` and ``=jacobian`` train the same model."""
    import json

    from mlpot.train import run
    from tests.helpers import train_config

    extra = ["optim=lbfgs", "optim.optimizer.max_iter=3"] if optim == "lbfgs" else []
    res = {}
    for path in ("autograd", "jacobian"):
        cfg = train_config(tmp_path / path, tiny_data, "trainer.max_epochs=2", "dtype=float64", "export=false",
                           f"training.forces={path}", *extra)
        with caplog.at_level("INFO", logger="mlpot.train"):
            res[path] = run(cfg)
        assert f"forces and stress: {path} path (training.forces={path})" in caplog.text
    for key in ("test/forces_rmse", "test/energy_per_atom_rmse", "test/stress_rmse", "val/loss"):
        assert res["autograd"][key] == pytest.approx(res["jacobian"][key], rel=1e-8), key
    hist = json.loads((tmp_path / "autograd" / "history.json").read_text())
    assert hist and "train/epoch_seconds" in hist[-1]


def test_automatic_choice_says_why(tiny_data, tmp_path):
    from mlpot.data.datamodule import AtomsDataModule, choose_force_path
    from mlpot.descriptors import build_acsf

    dm = AtomsDataModule(path=tiny_data, cache_dir=tmp_path)
    dm.load()
    d = build_acsf(dm.elements, cutoff=4.0, radial={"eta": [0.5, 1.0]})
    kind, why = choose_force_path(dm, d, torch.float32, "auto", "gpu")
    assert kind == "autograd" and "GPU" in why
    kind, why = choose_force_path(dm, d, torch.float32, "auto", "cpu", budget_gb=100.0)
    assert kind == "jacobian" and "within the budget of 100 GB (training.jacobian_budget_gb)" in why
    kind, why = choose_force_path(dm, d, torch.float32, "auto", "cpu", budget_gb=1e-6)
    assert kind == "autograd" and "over the budget" in why and "an estimated" in why
    assert choose_force_path(dm, d, torch.float32, "jacobian", "gpu")[0] == "jacobian"
    with pytest.raises(ValueError, match="training.forces must be one of"):
        choose_force_path(dm, d, torch.float32, "analytic", "cpu")
    # the estimate is close to the data of the store it predicts (a tiny store's file is mostly chunk padding)
    dm.prepare(d, torch.float32, "jacobian")
    est = dm.estimate_jacobian_bytes(d, torch.float32)
    assert 0.8 < est / dm.jstore.data_bytes() < 1.25


@pytest.mark.parametrize("kind", ["autograd", "jacobian"])
def test_each_rank_reads_only_its_frames(tiny_data, tmp_path, monkeypatch, kind):
    """Under DDP (2 ranks here, simulated) each rank's loader reads only its own share of the store: training
    shards are disjoint up to the padding of the last step, evaluation shards are disjoint and cover the split."""
    from mlpot.data.datamodule import AtomsDataModule
    from mlpot.data.store import FrameStore
    from mlpot.descriptors import build_acsf

    dm = AtomsDataModule(path=tiny_data, cache_dir=tmp_path, batch_size=3)
    dm.load()
    dm.prepare(build_acsf(dm.elements, cutoff=4.0, radial={"eta": [0.5]}), torch.float64, kind)
    reads = []
    real, real_batch = FrameStore.read, FrameStore.read_batch
    monkeypatch.setattr(FrameStore, "read", lambda self, k: reads.append(int(k)) or real(self, k))
    monkeypatch.setattr(FrameStore, "read_batch", lambda self, ks: reads.extend(int(k) for k in ks) or real_batch(self, ks))
    seen = {}
    for split, shuffle in (("train", True), ("test", False)):
        for rank in (0, 1):
            reads.clear()
            n = sum(int(b["n_atoms"].shape[0]) for b in dm.loader(split, shuffle, rank=rank, world=2))
            seen[split, rank] = list(reads)
            assert len(reads) == n
    for split in ("train", "test"):
        a, b = set(seen[split, 0]), set(seen[split, 1])
        assert a | b == set(dm.splits[split].tolist())
        if split == "test":
            assert not a & b and len(seen[split, 0]) + len(seen[split, 1]) == len(dm.splits[split])
        else:
            assert len(a & b) <= 1  # one frame of padding at most


def test_scatter_backend_switch():
    from mlpot.ops import scatter_backend, scatter_sum, set_scatter_backend

    src, idx = torch.arange(6.0).reshape(3, 2), torch.tensor([1, 0, 1])
    torch.testing.assert_close(scatter_sum(src, idx, 3), torch.tensor([[2.0, 3.0], [4.0, 6.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="scatter backend"):
        set_scatter_backend("cuda")
    try:
        import torch_scatter  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="training.scatter=native"):
            set_scatter_backend("torch_scatter")
    else:
        set_scatter_backend("torch_scatter")
        torch.testing.assert_close(scatter_sum(src, idx, 3), torch.tensor([[2.0, 3.0], [4.0, 6.0], [0.0, 0.0]]))
    set_scatter_backend("native")
    assert scatter_backend() == "native"


def test_bessel_radial_is_twice_differentiable_in_closed_form():
    """The Bessel radial functions enter the autograd path as one node with closed-form first and second
    derivatives (j_l'' from Bessel's equation): the same values and derivatives as autograd through the
    recurrences, and torch's gradcheck and gradgradcheck pass."""
    from torch.autograd import gradcheck, gradgradcheck

    from mlpot.descriptors.bessel import SphericalBessel

    d = SphericalBessel(["Cu"], n_max=5, cutoff=5.0)
    r = (torch.rand(24, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4.8 + 0.2)
    r.requires_grad_(True)
    w = torch.randn(d._radial_values(r).shape[1], dtype=torch.float64)
    out = []
    for fn in (d._radial_values, d.radial):
        y = fn(r) @ w
        (d1,) = torch.autograd.grad(y.sum(), r, create_graph=True)
        (d2,) = torch.autograd.grad((d1**2).sum(), r)
        out.append((y.detach(), d1.detach(), d2))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert gradcheck(d.radial, (r,)) and gradgradcheck(d.radial, (r,))


@pytest.mark.parametrize("kind", ["autograd", "jacobian"])
def test_stores_held_in_memory_give_the_same_batches(tiny_data, tmp_path, kind):
    """A store that fits data.keep_in_memory_gb is read into memory once (single process, minibatches): the
    batches are the same tensors as those read from the HDF5 files; a budget of 0 keeps reading the files."""
    from mlpot.data.datamodule import AtomsDataModule
    from mlpot.data.memory import MemoryFile
    from mlpot.descriptors import build_acsf

    def batches(budget):
        dm = AtomsDataModule(path=tiny_data, cache_dir=tmp_path, batch_size=3, keep_in_memory_gb=budget)
        dm.load()
        dm.prepare(build_acsf(dm.elements, cutoff=4.0, radial={"eta": [0.5]}), torch.float64, kind)
        held = dm.hold_stores()
        assert held == (budget > 0) and isinstance(dm.open_store()._h5, MemoryFile) == held
        return [b for split in ("train", "val") for b in dm.loader(split, split == "train")]

    for a, b in zip(batches(0.0), batches(1.0), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            x, y = a[key], b[key]
            if isinstance(x, torch.Tensor):
                assert torch.equal(x, y), key
            elif isinstance(x, tuple):
                assert all((u is None and v is None) or torch.equal(u, v) for u, v in zip(x, y, strict=True)), key
