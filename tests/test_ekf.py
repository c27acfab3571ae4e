"""The extended Kalman filter: exact Bayesian least squares on a linear model, float64 P through a
checkpoint, n2p2's schedules, and a short training run through mlpot-train (optim=ekf)."""

import json
import math

import pytest
import torch

from mlpot.training.ekf import KalmanFilter
from mlpot.train import run
from tests.helpers import train_config as config


def test_linear_model_gives_the_ridge_solution():
    """For y = X w the filter with q = 0 and fixed η is recursive least squares: after all patterns,
    w = (ε I + η XᵀX)⁻¹ η Xᵀ y (prior P₀ = I/ε, measurement variance 1/η), whatever the grouping."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 6, dtype=torch.float64, generator=g)
    y = X @ torch.randn(6, dtype=torch.float64, generator=g) + 0.1 * torch.randn(40, dtype=torch.float64, generator=g)
    eps, eta = 0.5, 2.0
    exact = torch.linalg.solve(eps * torch.eye(6, dtype=torch.float64) + eta * X.T @ X, eta * X.T @ y)
    for group in (1, 3, 40):
        w = torch.nn.Parameter(torch.zeros(6, dtype=torch.float64))
        kf = KalmanFilter([w], epsilon=eps, eta0=eta, etamax=eta, q0=0.0, qmin=0.0)
        for s in range(0, 40, group):
            rows = slice(s, s + group)
            kf.update(y[rows] - X[rows] @ w.detach(), X[rows].T)  # H = ∂(Xw)/∂w
        assert torch.allclose(w.detach(), exact, atol=1e-10), group


def test_schedules_and_float64_state_through_a_checkpoint():
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float32))
    kf = KalmanFilter([w], epsilon=0.01, eta0=0.01, etatau=2.302, etamax=1.0, q0=0.01, qtau=2.302, qmin=1e-6)
    kf.set_epoch(4)
    assert kf.param_groups[0]["lr"] == pytest.approx(0.01 * math.exp(4 / 2.302))
    assert kf.param_groups[0]["q"] == pytest.approx(0.01 * math.exp(-4 / 2.302))
    kf.set_epoch(100)
    assert kf.param_groups[0]["lr"] == 1.0 and kf.param_groups[0]["q"] == 1e-6
    kf.update(torch.tensor([0.3]), torch.tensor([[1.0], [1e-9], [2.0]]))
    sd = kf.state_dict()
    other = KalmanFilter([torch.nn.Parameter(torch.zeros(3))])
    other.load_state_dict(sd)
    P = other.state[other.param_groups[0]["params"][0]]["P"]
    assert P.dtype == torch.float64 and torch.equal(P, kf.state[w]["P"])
    assert other.param_groups[0]["epoch"] == 100
    with pytest.raises(RuntimeError, match="update"):
        kf.step()


def test_ekf_training_run(tiny_data, tmp_path):
    cfg = config(tmp_path, tiny_data, "optim=ekf", "data.batch_size=1", "optim.module.force_fraction=0.05",
                 "trainer.max_epochs=2")
    metrics = run(cfg)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [round(h["lr"], 6) for h in history] == [0.01, round(0.01 * math.exp(1 / 2.302), 6)]  # η per epoch
    assert metrics["test/forces_rmse"] < 1.0 and (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("pattern, weight", [("total", 1.0), ("per_atom", 1.0), ("total", 0.1)])
def test_energy_pattern(pattern, weight):
    """n2p2 updates on the structure's total energy (error and derivative of E); ``per_atom`` on E/N;
    ``energy_weight`` scales both."""
    from mlpot.data.frames import set_label
    from mlpot.data.jacobians import collate, jacobian_records
    from mlpot.training.ekf import EKFModule
    from mlpot.training.losses import LossWeights
    from tests.helpers import random_cell, random_potential

    pot = random_potential(["Cu"], types=(2,), seed=1)
    atoms = random_cell(["Cu"] * 5, a=3.6, seed=2)
    set_label(atoms, "energy", -3.0)
    batch = collate(jacobian_records(pot.descriptor, [atoms], pot.elements, pot.cutoff, dtype=torch.float64))
    module = EKFModule(pot, LossWeights(energy=1.0, forces=1.0), force_fraction=0.0, energy_pattern=pattern,
                       energy_weight=weight)
    calls = []
    module._kf = lambda: type("Recorder", (), {"update": lambda self, xi, H: calls.append((xi, H))})()
    module.training_step(batch, 0)
    (xi, H), n = calls[0], (5.0 if pattern == "per_atom" else 1.0) / weight
    energy = pot.forward_cached(batch, forces=False)["energy"]
    params = list(pot.parameters())
    grads = torch.autograd.grad(energy.sum(), params)
    assert len(calls) == 1 and torch.allclose(xi, (-3.0 - energy.detach()) / n)
    assert torch.allclose(H[:, 0], torch.cat([g.reshape(-1) for g in grads]) / n)


def test_energy_pattern_is_checked():
    from mlpot.training.ekf import EKFModule
    from tests.helpers import random_potential

    with pytest.raises(ValueError, match="energy_pattern"):
        EKFModule(random_potential(["Cu"], types=(2,)), energy_pattern="mean")
