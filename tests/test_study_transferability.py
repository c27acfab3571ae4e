"""scripts/study_transferability.py: the configs of both models (same preset, optimiser and overrides, seed), the
mean ± std over seeds and the tables built from per-seed results (no training here)."""

from __future__ import annotations

import argparse
import copy
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    path = ROOT / "scripts" / "study_transferability.py"
    spec = importlib.util.spec_from_file_location("study_transferability", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def args(**kw):
    base = dict(optim="lbfgs", set=["callbacks.early_stopping.patience=7"], hdnnp_epochs=11, pinn_epochs=5,
                baseline_epochs=3)
    return argparse.Namespace(**{**base, **kw})


def test_both_models_share_preset_optimiser_and_overrides(study, tmp_path):
    cfgs = {m: study.make_config("ta", m, tmp_path, args(), seed=2) for m in ("hdnnp", "pinn")}
    for model, cfg in cfgs.items():
        assert cfg.seed == 2 and cfg.data.split.seed == 2
        assert cfg.optim.optimizer._target_ == "torch.optim.LBFGS" and cfg.data.batch_size == 100000
        assert cfg.callbacks.early_stopping.patience == 7
        assert cfg.data.held_out == ["Volume_*", "Liquid"]
        assert cfg.run_dir == str(tmp_path / "ta" / model)
    h, p = cfgs["hdnnp"], cfgs["pinn"]
    assert h.model._target_ == "mlpot.models.hdnnp.HDNNP" and p.model._target_ == "mlpot.models.pinn.PINN"
    assert list(h.model.hidden) == list(p.model.hidden)
    assert h.descriptor == p.descriptor and h.loss == p.loss and h.optim == p.optim
    assert (h.trainer.max_epochs, p.trainer.max_epochs, p.model.baseline.epochs) == (11, 5, 3)
    preset = study.make_config("mo", "pinn", tmp_path, args(optim="preset", set=[]))
    assert preset.optim.optimizer._target_ == "torch.optim.AdamW" and preset.data.batch_size == 4


def test_mean_std(study):
    assert study.mean_std([0.001, 0.002, 0.003], 1e3) == "2.0 ± 1.0"  # sample standard deviation
    assert study.mean_std([0.1234], 1, 3) == "0.123"  # one seed: the value alone


def fake_seed(seed, e_in, ev_err):
    group = {"energy_per_atom_rmse": 2.0, "forces_rmse": 0.0, "frames": 21}
    model = {"in_distribution": {"energy_per_atom_rmse": e_in, "forces_rmse": 0.1, "frames": 28},
             "held_out": {"energy_per_atom_rmse": 2.0, "forces_rmse": 0.5, "frames": 85},
             "held_out_groups": {"Volume_BCC": group}, "train_seconds": 10.0, "epochs": 9, "best_epoch": 4}
    dft = [[15.0, 18.0, 21.0], [-11.5, -11.8, -11.6]]
    ev = {"v0": 18.0, "dft": dft, "at_dft": {m: [e + ev_err for e in dft[1]] for m in ("hdnnp", "pinn")},
          "rmse_vs_dft_eV_per_atom": {"hdnnp": ev_err, "pinn": ev_err},
          "rmse_vs_dft_compressed": {"hdnnp": ev_err, "pinn": ev_err},
          "rmse_vs_dft_expanded": {"hdnnp": ev_err, "pinn": ev_err}}
    return {"seed": seed, "ta": {"hdnnp": model, "pinn": copy.deepcopy(model), "ev_curve": ev}}


def test_table_over_seeds(study):
    text = study.table([fake_seed(0, 0.001, 0.1), fake_seed(1, 0.003, 0.3)], ["ta"])
    assert "mean ± std over 2 seeds" in text
    row = "| ta | hdnnp | 2.0 ± 1.4 | 2000.0 ± 0.0 | 0.100 ± 0.000 | 0.500 ± 0.000 | 9 (4), 9 (4) | 10 ± 0 |"
    assert row in text
    assert "| hdnnp | 0.200 ± 0.141 | 0.200 ± 0.141 | 0.200 ± 0.141 | 0.100, 0.300 |" in text
    assert "| 0.833 | -11.500 | 0.200 ± 0.141 | 0.200 ± 0.141 |" in text
    assert "| ta | pinn | Volume_BCC | 21 | 2000.0 ± 0.0 | 0.000 ± 0.000 |" in text
