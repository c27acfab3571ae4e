"""The training pipeline end to end on a tiny built-in data set (in-process Hydra compose)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

import mlpot
from mlpot.errors import DataPathError, MissingLabelError, UnknownElementError
from mlpot.train import run
from tests.helpers import train_config as config

ROOT = Path(__file__).resolve().parents[1]


def test_default_run_writes_artefacts_and_exports(tiny_data, tmp_path):
    metrics = run(config(tmp_path, tiny_data, "dtype=float64"))
    for key in ("test/forces_rmse", "test/energy_per_atom_mae", "test/energy_per_atom_rmse", "test/atomic_energies_rmse",
                "train_seconds"):
        assert key in metrics
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test/forces_rmse"] == pytest.approx(metrics["test/forces_rmse"])
    for name in ("model.pt", "config_resolved.yaml", "parity_forces.png", "parity_energy_per_atom.png",
                 "parity_atomic_energies.png", "learning_curves.png", "checkpoints/last.ckpt"):
        assert (tmp_path / name).exists(), name
    assert "e0:" in (tmp_path / "config_resolved.yaml").read_text()  # statistics injected into the config


def test_export_equals_in_memory_model(tiny_data, tmp_path):
    """model.pt predictions equal the trained in-memory model's to 1e-10 (float64)."""
    from mlpot.train import build
    from mlpot.data.jacobians import collate, jacobian_records

    cfg = config(tmp_path, tiny_data, "dtype=float64")
    run(cfg)
    loaded = mlpot.load(tmp_path / "model.pt")
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    dm, potential, module = build(cfg)
    module.load_state_dict(ckpt["state_dict"])
    frames = dm.atoms("test")
    ref = potential.predict(frames, stress=True)
    out = loaded.predict(frames, stress=True)
    for key in ("energy", "atomic_energies", "forces", "stress"):
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=1e-10)
    cached = loaded.forward_cached(collate(jacobian_records(loaded.descriptor, frames, loaded.elements, loaded.cutoff,
                                                            dtype=torch.float64)), forces=True)
    torch.testing.assert_close(cached["forces"].detach(), ref["forces"], rtol=0, atol=1e-10)


def test_resume_is_exact(tiny_data, tmp_path):
    """A run stopped after 2 epochs and resumed from last.ckpt ends as a run never stopped."""
    full = run(config(tmp_path / "full", tiny_data, "trainer.max_epochs=4", "callbacks=ema"))
    run(config(tmp_path / "part", tiny_data, "trainer.max_epochs=2", "callbacks=ema"))
    resumed = run(config(tmp_path / "part", tiny_data, "trainer.max_epochs=4", "callbacks=ema",
                         f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}"))
    for key in ("test/forces_rmse", "test/energy_per_atom_rmse", "val/loss"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6, abs=1e-9), key
    # the resumed run logs beside the first part's CSV, not over it
    logs = sorted(p.parent.name for p in (tmp_path / "part" / "logs").rglob("metrics.csv"))
    assert logs == ["version_0", "version_1"]


def test_tensorboard_and_wandb_offline(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(config(tmp_path / "tb", tiny_data, "logger=tensorboard", "trainer.max_epochs=1"))
    assert any((tmp_path / "tb" / "tensorboard").rglob("events.out.tfevents*"))
    run(config(tmp_path / "wb", tiny_data, "logger=wandb", "trainer.max_epochs=1"))
    (offline,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    # the dashboard compares runs by their hyperparameters: the whole resolved config (issue 17); an offline run
    # keeps it in its binary record until it is synced
    (record,) = offline.glob("run-*.wandb")
    data = record.read_bytes()
    for key in (b"descriptor", b"optim", b"seed", b"cutoff", b"batch_size"):
        assert key in data, key
    # a second job in the same process (a sweep) gets a W&B run of its own
    run(config(tmp_path / "wb2", tiny_data, "logger=wandb", "trainer.max_epochs=1"))
    (second,) = (tmp_path / "wb2" / "wandb").glob("offline-run-*")
    assert second.name != offline.name


# -- bad input ------------------------------------------------------------------------------------
def test_missing_data_path(tmp_path):
    with pytest.raises(DataPathError, match="does-not-exist"):
        run(config(tmp_path, tmp_path / "does-not-exist"))


def test_override_of_unknown_key(tmp_path, tiny_data):
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        config(tmp_path, tiny_data, "data.no_such_key=1")


def test_element_missing_from_elements(tmp_path, tiny_data):
    with pytest.raises(UnknownElementError, match=r"Cu.*elements=\['Ag'\]"):
        run(config(tmp_path, tiny_data, "elements=[Ag]"))


def test_split_leaving_validation_empty(tmp_path, tiny_data):
    from mlpot.data.splits import SplitError

    with pytest.raises(SplitError, match="val"):
        run(config(tmp_path, tiny_data, "data.split.fractions=[1.0,0.0,0.0]"))


def test_frame_without_needed_label(tmp_path, tiny_data):
    """A loss term on atomic energies with data whose atomic-energy key does not exist."""
    with pytest.raises(MissingLabelError, match="atomic_energies"):
        run(config(tmp_path, tiny_data, "loss.atomic_energies=1.0", "data.keys.atomic_energies=no_such_key"))


# -- command line: multirun + summary, DDP on CPU ---------------------------------------------------
def _cli(args, cwd, timeout=600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "mlpot.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


COMMON = ["data.batch_size=4", "trainer.enable_progress_bar=false", "descriptor.cutoff=4.0",
          "descriptor.angular.rc=3.5", "model.hidden=[8,8]"]


def test_multirun_and_summary(tiny_data, tmp_path):
    res = _cli(["-m", f"data.path={tiny_data}", "trainer.max_epochs=1", "seed=1,2",
                f"hydra.sweep.dir={tmp_path / 'sweep'}", *COMMON], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list((tmp_path / "sweep").rglob("metrics.json"))) == 2
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize_runs.py"), str(tmp_path / "sweep"),
                          "--plot", str(tmp_path / "sweep.png"), "--markdown", str(tmp_path / "sweep.md")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "seed=1" in out.stdout and "mean ± std over seeds" in out.stdout
    assert f"common overrides: data.path={tiny_data}" in out.stdout  # shared overrides printed once
    assert (tmp_path / "sweep.png").stat().st_size > 0
    md = (tmp_path / "sweep.md").read_text()
    assert "| (defaults) | 2 |" in md and " ± " in md


def test_ddp_cpu_test_metrics_not_distorted(tiny_data, tmp_path):
    """Two gloo processes: the test metrics equal a single-process evaluation of the exported model,
    although the test set (an odd number of frames) does not divide evenly between the ranks."""
    from mlpot.data.datamodule import AtomsDataModule
    from mlpot.training.losses import ErrorAccumulator, errors
    from mlpot.data.jacobians import collate, jacobian_records

    run_dir = tmp_path / "ddp"
    res = _cli([f"data.path={tiny_data}", "trainer=ddp_cpu", "trainer.max_epochs=2", f"run_dir={run_dir}",
                f"hydra.run.dir={run_dir}", "dtype=float64", "data.split.fractions=[0.6,0.24,0.16]", *COMMON],
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dm = AtomsDataModule(path=tiny_data, split={"kind": "random", "fractions": [0.6, 0.24, 0.16], "seed": 0},
                         cache_dir=tmp_path / "cache")
    test = dm.atoms("test")
    assert len(test) % 2 == 1
    pot = mlpot.load(run_dir / "model.pt")
    acc = ErrorAccumulator()
    batch = collate(jacobian_records(pot.descriptor, test, pot.elements, pot.cutoff, dtype=torch.float64))
    acc.update(errors(pot.forward_cached(batch, forces=True, stress=True), batch))
    ref = acc.compute()
    assert metrics["test/forces_rmse"] == pytest.approx(ref["forces_rmse"], rel=1e-9)
    assert metrics["test/energy_per_atom_mae"] == pytest.approx(ref["energy_per_atom_mae"], rel=1e-9)
