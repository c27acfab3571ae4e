"""The test-curve callback (mlpot/training/curves.py) with automatic (AdamW) and manual (EKF, L-BFGS)
optimisation on tiny built-in data, its timing bookkeeping, and scripts/compare_optimizers.py's table and
plot on fabricated curves."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.callbacks import Timer

from mlpot.train import build, run
from mlpot.training import curves
from mlpot.training.curves import COLUMNS, TestCurve, evaluate_batches, read_curve
from tests.helpers import train_config as config

ROOT = Path(__file__).resolve().parents[1]
ADD = "++callbacks.test_curve._target_=mlpot.training.curves.TestCurve"  # with any callbacks choice


def _csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), read_curve(path)


def _check_rows(rows, epochs):
    assert [r["epoch"] for r in rows] == epochs
    wall = [r["wall_seconds"] for r in rows]
    assert all(b > a for a, b in zip(wall, wall[1:])), wall
    for r in rows:
        assert r["eval_seconds"] > 0
        for k in COLUMNS[2:-1]:
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)


def test_adamw_curve_matches_the_last_weights(tiny_data, tmp_path):
    cfg = config(tmp_path, tiny_data, "callbacks=test_curve", "trainer.max_epochs=2", "dtype=float64", "export=false")
    metrics = run(cfg)
    header, rows = _csv(tmp_path / "test_curve.csv")
    assert header == list(COLUMNS)
    _check_rows(rows, [1, 2])
    assert rows[-1]["wall_seconds"] < metrics["train_seconds"]
    # the last row is the test error of the weights after epoch 2 (last.ckpt), in eval mode
    dm, potential, module = build(cfg)
    module.load_state_dict(torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"])
    ref = evaluate_batches(potential.eval(), dm.loader("test"))
    for k in COLUMNS[2:-1]:
        assert rows[-1][k] == pytest.approx(ref[k], rel=1e-6), k
    assert ref["forces_count"] == 3 * sum(len(a) for a in dm.atoms("test"))


def test_ekf_curve_with_a_row_for_the_initial_weights(tiny_data, tmp_path):
    cfg = config(tmp_path, tiny_data, "optim=ekf", "data.batch_size=1", "optim.module.force_fraction=0.05",
                 "trainer.max_epochs=2", "export=false", ADD, "++callbacks.test_curve.at_start=true")
    run(cfg)
    header, rows = _csv(tmp_path / "test_curve.csv")
    assert header == list(COLUMNS)
    _check_rows(rows, [0, 1, 2])
    assert rows[0]["wall_seconds"] < rows[1]["wall_seconds"]
    assert rows[-1]["forces_rmse"] < rows[0]["forces_rmse"]  # the filter learns


def test_lbfgs_curve_only_at_the_end(tiny_data, tmp_path):
    cfg = config(tmp_path, tiny_data, "optim=lbfgs", "data.batch_size=1000", "optim.optimizer.max_iter=3",
                 "trainer.max_epochs=2", "export=false", ADD, "++callbacks.test_curve.every_n_epochs=0")
    run(cfg)
    _, rows = _csv(tmp_path / "test_curve.csv")
    _check_rows(rows, [2])


def test_evaluations_are_left_out_of_wall_time_and_max_time(tmp_path, monkeypatch):
    def slow(*args, **kwargs):
        time.sleep(0.2)
        return {k: 0.1 for k in COLUMNS[2:-1]}

    monkeypatch.setattr(curves, "evaluate_batches", slow)
    timer = Timer(duration="00:00:10:00")
    trainer = SimpleNamespace(is_global_zero=True, callbacks=[timer], default_root_dir=str(tmp_path), current_epoch=0,
                              datamodule=SimpleNamespace(loader=lambda *a, **k: [None]))
    module = SimpleNamespace(potential=torch.nn.Linear(2, 1), device="cpu")
    cb = TestCurve(every_n_epochs=1)
    timer.on_train_start(trainer, module)
    cb.on_fit_start(trainer, module)
    for epoch in range(2):
        trainer.current_epoch = epoch
        cb.on_train_batch_end(trainer, module, None, None, 0)
        cb.on_train_epoch_end(trainer, module)
    cb.on_train_end(trainer, module)  # nothing trained since the last row: no extra row
    assert [r["epoch"] for r in cb.rows] == [1, 2]
    assert cb.wall_seconds() < 0.1 and timer.time_elapsed() < 0.1 and timer._offset < -0.35
    assert module.potential.training  # mode restored
    # the rows and the training time survive a checkpoint
    other = TestCurve()
    other.load_state_dict(cb.state_dict())
    assert other.rows == cb.rows and other.wall_seconds() == pytest.approx(cb.wall_seconds(), abs=0.05)
    assert read_curve(tmp_path / "test_curve.csv") == [
        {k: (v if k == "epoch" else pytest.approx(v, abs=1e-6)) for k, v in r.items()} for r in cb.rows]


# -- scripts/compare_optimizers.py ------------------------------------------------------------------------
def _script():
    spec = importlib.util.spec_from_file_location("compare_optimizers", ROOT / "scripts" / "compare_optimizers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_curve(path: Path, times, forces_mae, energy_mae):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        w.writeheader()
        for k, (t, f, e) in enumerate(zip(times, forces_mae, energy_mae)):
            w.writerow({"epoch": k + 1, "wall_seconds": t, "energy_per_atom_rmse": 1.3 * e, "energy_per_atom_mae": e,
                        "forces_rmse": 1.4 * f, "forces_mae": f, "eval_seconds": 0.01})


def test_compare_script_table_and_plot_from_curves(tmp_path):
    mod = _script()
    out = tmp_path / "cmp"
    _fake_curve(out / "runs" / "adamw" / "test_curve.csv", [10, 20, 30, 40], [0.30, 0.20, 0.15, 0.16],
                [0.010, 0.008, 0.006, 0.005])
    _fake_curve(out / "runs" / "ekf" / "test_curve.csv", [50, 100, 150], [0.20, 0.12, 0.11], [0.006, 0.004, 0.0045])
    (out / "runs" / "ekf" / "metrics.json").write_text(json.dumps({"test/energy_per_atom_mae": 0.004,
                                                                   "test/forces_mae": 0.12}))
    refs = [mod.parse_reference("n2p2:223:0.126:4.66")]
    curves_ = mod.load_curves(out / "runs")
    summary = {r["label"]: r for r in mod.summarize(curves_, "mae", refs)}
    assert summary["adamw"]["best_forces"] == 0.15 and summary["adamw"]["best_seconds"] == 30
    assert summary["adamw"]["reach_seconds"] is None
    assert summary["ekf"]["reach_seconds"] == 100  # F 0.12 <= 0.126 and E 4.0 <= 4.66 meV/atom
    assert summary["ekf"]["epochs"] == 3 and summary["ekf"]["energy_mae"] == pytest.approx(4.5)
    assert summary["adamw"]["forces_rmse"] == pytest.approx(1.4 * 0.16)
    table = mod.report(out, "mae", refs, command="compare_optimizers.py ...")
    assert (out / "optimizers.png").stat().st_size > 1000
    md = (out / "optimizers.md").read_text()
    assert table in md and "compare_optimizers.py ..." in md
    lines = table.splitlines()
    assert lines[0].startswith("| optimiser | epochs | train s | best F MAE | at s | reaches n2p2")
    assert any(line.startswith("| ekf | 3 | 150.0 | 0.1100 | 150.0 | 100.0 | 4.50 |") for line in lines), table
    assert any(line.startswith("| n2p2 (reference) |") for line in lines)
    mod.report(out, "rmse", None)  # no reference, the other metric


def test_compare_script_command_line_pieces():
    mod = _script()
    assert mod.parse_run("ekf:optim=ekf data.batch_size=1") == ("ekf", ["optim=ekf", "data.batch_size=1"])
    with pytest.raises(ValueError):
        mod.parse_run("no label")
    assert mod.duration(300) == "00:00:05:00" and mod.duration(90061) == "01:01:01:01"
    cmd = mod.build_command("python", Path("/tmp/r"), "data", "mlearn", 300, 2, ["seed=1"], ["optim=ekf"])
    assert cmd[:3] == ["python", "-m", "mlpot.train"] and cmd[-2:] == ["seed=1", "optim=ekf"]
    for piece in ("experiment=mlearn", "trainer.max_epochs=-1", "trainer.max_time=00:00:05:00",
                  "~callbacks.early_stopping", "++callbacks.test_curve.every_n_epochs=2", "hydra.run.dir=/tmp/r"):
        assert piece in cmd, piece
    # a key another optimiser's preset left behind is dropped; the optimiser's own keys are kept
    assert mod.stale_optim_keys(["optim=adamw", "+optim.optimizer.max_iter=25"]) == ["~optim.optimizer.max_iter"]
    assert mod.stale_optim_keys(["optim=lbfgs", "optim.optimizer.max_iter=25"]) == []
