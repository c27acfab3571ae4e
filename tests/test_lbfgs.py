"""optim=lbfgs: full-batch L-BFGS driven from Lightning (manual optimisation) on tiny built-in data."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from mlpot.train import run
from tests.helpers import train_config


def config(run_dir, data_path, *overrides):
    return train_config(run_dir, data_path, "optim=lbfgs", "data.batch_size=1000", "optim.optimizer.max_iter=5",
                        "dtype=float64", "export=false", *overrides)


def test_lbfgs_reduces_the_loss_and_writes_metrics(tiny_data, tmp_path):
    cfg = config(tmp_path, tiny_data, "trainer.max_epochs=4")
    metrics = run(cfg)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist) == 4
    rows = [row for row in hist if "train/loss" in row]  # training errors at the weights before each step
    assert len(rows) == len(hist)  # every epoch's row pairs its validation with its own training metrics
    train = [row["train/loss"] for row in rows]
    val = [row["val/loss"] for row in hist]
    assert len(train) >= 3
    # strong-Wolfe line search on the full batch: the training loss never increases from one step to the next
    assert all(b <= a * (1 + 1e-9) for a, b in zip(train, train[1:])), train
    assert train[-1] < 0.5 * train[0], train
    assert min(val[1:]) < 0.5 * val[0], val
    # L-BFGS calls the closure several times per step; the epoch's training errors cover each frame once
    dm = instantiate(cfg.data)
    frames = dm.atoms("train")
    for row in rows:
        assert row["train/energy_count"] == len(frames)
        assert row["train/forces_count"] == 3 * sum(len(a) for a in frames)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/forces_mae", "test/energy_per_atom_mae", "val/loss", "train_seconds"):
        assert key in saved, key
    assert saved["test/forces_mae"] == pytest.approx(metrics["test/forces_mae"])
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_streamed_split_equals_one_batch(tiny_data, tmp_path):
    """Full-batch L-BFGS over the split read from disk in batches of 3 frames at every evaluation (the objective
    and gradient summed batch by batch) takes the same steps as over the split in one batch kept in memory:
    same history to 1e-10 (float64)."""
    one = run(config(tmp_path / "one", tiny_data, "trainer.max_epochs=2", "optim.module.weight_decay=1e-4"))
    many = run(config(tmp_path / "many", tiny_data, "trainer.max_epochs=2", "optim.module.weight_decay=1e-4",
                      "data.batch_size=3", "data.keep_in_memory_gb=0"))  # read again at every evaluation
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    h3 = json.loads((tmp_path / "many" / "history.json").read_text())
    assert len(h1) == len(h3) == 2
    for a, b in zip(h1, h3):
        for key in ("train/loss", "val/loss", "train/forces_rmse"):
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-10, abs=1e-14), key
    assert many["test/forces_rmse"] == pytest.approx(one["test/forces_rmse"], rel=1e-10)


def test_adam_warm_start_then_lbfgs(tiny_data, tmp_path):
    cfg = config(tmp_path, tiny_data, "trainer.max_epochs=3", "optim.module.warmup_epochs=1")
    run(cfg)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert len(hist) == 3 and hist[-1]["val/loss"] < hist[0]["val/loss"]


def test_scheduler_is_rejected(tiny_data, tmp_path):
    from mlpot.train import build

    with pytest.raises(ValueError, match="scheduler"):
        build(config(tmp_path, tiny_data, "+optim.scheduler._target_=torch.optim.lr_scheduler.StepLR",
                     "+optim.scheduler._partial_=true", "+optim.scheduler.step_size=1"))


def test_stalled_step_drops_the_history():
    """A step that leaves the weights unchanged drops L-BFGS's curvature pairs; a step that moves keeps them."""
    from mlpot.training.optim import restart_if_stalled

    w = torch.nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
    opt = torch.optim.LBFGS([w], line_search_fn="strong_wolfe", max_iter=5)

    def closure():
        opt.zero_grad()
        loss = ((w - 1.0) ** 2 * torch.tensor([1.0, 10.0], dtype=torch.float64)).sum()
        loss.backward()
        return loss

    before = [w.detach().clone()]
    opt.step(closure)
    assert not restart_if_stalled(opt, before, [w]) and opt.state[w]["old_dirs"]  # moved: history kept
    assert restart_if_stalled(opt, [w.detach().clone()], [w]) and not opt.state  # unchanged: dropped
    assert not restart_if_stalled(opt, [w.detach().clone()], [w])  # nothing to drop
    assert not restart_if_stalled(torch.optim.SGD([w], lr=0.1), [w.detach().clone()], [w])


def test_weight_decay_shrinks_the_weights(tiny_data, tmp_path):
    """optim.module.weight_decay adds λ Σ w² (weight matrices only) to the L-BFGS objective: same start, same
    data, smaller weights than without it; the logged training loss stays the data loss."""
    from mlpot.train import build

    norms = {}
    for wd in (0.0, 0.1):
        cfg = config(tmp_path / str(wd), tiny_data, "trainer.max_epochs=3", f"optim.module.weight_decay={wd}")
        run(cfg)
        _, _, module = build(cfg)
        state = torch.load(tmp_path / str(wd) / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        norms[wd] = float(module.l2_norm().detach())
        assert module.weight_decay == wd
        hist = json.loads((tmp_path / str(wd) / "history.json").read_text())
        row = [r for r in hist if "train/loss" in r][-1]
        w = module.weights
        assert row["train/loss"] == pytest.approx(w.energy * row["train/energy_per_atom_rmse"] ** 2
                                                  + w.forces * row["train/forces_rmse"] ** 2, rel=1e-9)
    assert norms[0.1] < 0.8 * norms[0.0], norms
    with pytest.raises(ValueError, match="weight_decay"):
        build(config(tmp_path / "neg", tiny_data, "optim.module.weight_decay=-1"))
