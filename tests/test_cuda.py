"""CUDA: both force paths on the GPU give the CPU's loss and gradients, and a training run on ``trainer=gpu``
ends with the metrics of the same run on the CPU. Skipped where no GPU is present (``scripts/check_gpu.sh``
runs them on a GPU machine)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_both_paths_on_cuda_equal_cpu():
    from lightning_fabric.utilities.apply_func import move_data_to_device

    from mlpot.data.jacobians import collate, jacobian_records
    from mlpot.training.losses import LossWeights, errors, loss
    from tests.helpers import random_cell, random_potential
    from tests.test_force_paths import _graph_batch, _labelled

    pot = random_potential(["Cu", "S"], types=(2, 3, 9), cutoff=4.0, seed=3)
    frames = _labelled([random_cell(["Cu", "S", "Cu", "S", "S"], a=3.7, seed=s) for s in range(3)])
    weights = LossWeights(energy=1.0, forces=1.0, stress=10.0)
    batches = {"autograd": _graph_batch(frames, pot.elements, pot.cutoff),
               "jacobian": collate(jacobian_records(pot.descriptor, frames, pot.elements, pot.cutoff,
                                                    dtype=torch.float64))}
    for path, batch in batches.items():
        out = {}
        for device in ("cpu", "cuda"):
            p = pot.to(device)
            b = move_data_to_device(batch, torch.device(device))
            value = loss(errors(p.predict_batch(b, forces=True, stress=True, create_graph=True), b), weights)
            grads = torch.autograd.grad(value, list(p.parameters()))
            out[device] = (float(value), torch.cat([g.reshape(-1) for g in grads]).cpu())
        assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-10), path
        torch.testing.assert_close(out["cuda"][1], out["cpu"][1], rtol=1e-9, atol=1e-10)


def test_gpu_training_run_matches_cpu(tiny_data, tmp_path):
    from mlpot.train import run
    from tests.helpers import train_config

    res = {}
    for trainer in ("cpu", "gpu"):
        cfg = train_config(tmp_path / trainer, tiny_data, f"trainer={trainer}", "trainer.max_epochs=2",
                           "dtype=float64", "export=false", "training.forces=autograd", "trainer.deterministic=false")
        res[trainer] = run(cfg)
    for key in ("test/forces_rmse", "test/energy_per_atom_rmse"):
        assert res["gpu"][key] == pytest.approx(res["cpu"][key], rel=1e-6), key
