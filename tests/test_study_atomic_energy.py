"""scripts/study_atomic_energy.py: the optimiser budget (the same number of steps for any training-set size,
stage 1 a fixed share of it), nested seeded training subsets, a short end-to-end study on tiny built-in data
(full-batch L-BFGS and the config's AdamW), the mean ± std table, the plot and --resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = ["descriptor.cutoff=4.0", "descriptor.angular.rc=3.5", "model.hidden=[8,8]"]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_atomic_energy", ROOT / "scripts" / "study_atomic_energy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_budget_does_not_depend_on_the_training_set_size(study):
    # L-BFGS: full batch, an epoch is max_iter iterations; 400 steps = 20 epochs, stage 1 half of them
    assert study.schedule(5, 400, 0.5, True, 20, 99) == (20, 10, 5)
    assert study.schedule(160, 400, 0.5, True, 20, 99) == (20, 10, 160)
    # mini-batches: an epoch is steps_per_epoch batches, whatever n
    assert study.schedule(5, 400, 0.25, False, 20, 40) == (10, 2, None)
    assert study.schedule(160, 400, 0.25, False, 20, 40) == (10, 2, None)
    # at least one epoch in each stage
    assert study.schedule(5, 10, 0.9, True, 20, 1) == (2, 1, 5)
    sampler = study.FixedSteps(3, 10, __import__("torch").Generator().manual_seed(0))
    idx = list(sampler)
    assert len(idx) == len(sampler) == 10 and sorted(idx[:3]) == [0, 1, 2] and set(idx) == {0, 1, 2}


def test_lbfgs_keeps_a_presets_own_lbfgs(study, tmp_path):
    """--optim lbfgs: a config whose optimiser is L-BFGS is used as it is (the Cu preset's weight decay stays);
    otherwise optim=lbfgs with step 1 is added, also under L-BFGS-only overrides; --optim config keeps AdamW."""
    cu = study.compose_config(["experiment=sannp_cu", "data.path=x"], "lbfgs", tmp_path)
    assert cu.optim.optimizer._target_ == "torch.optim.LBFGS" and cu.optim.module.weight_decay == 1e-4
    assert cu.loss.atomic_energies > 0
    plain = study.compose_config(["optim.optimizer.max_iter=2"], "lbfgs", tmp_path)
    assert plain.optim.optimizer._target_ == "torch.optim.LBFGS" and plain.optim.optimizer.lr == 1.0
    assert plain.optim.optimizer.max_iter == 2 and plain.optim.module.weight_decay == 0.0
    assert study.compose_config([], "config", tmp_path).optim.optimizer._target_ == "torch.optim.AdamW"


@pytest.mark.parametrize("optim", ["lbfgs", "config"])
def test_short_study_table_plot_resume(study, tiny_data, tmp_path, optim):
    out = tmp_path / "study"
    extra = ["optim.optimizer.max_iter=2"] if optim == "lbfgs" else ["data.batch_size=2"]
    argv = ["--out", str(out), "--sizes", "2", "4", "999", "--seeds", "0", "1", "--steps", "4", "--optim", optim,
            "--steps-per-epoch", "2", "--max-test", "3", "--", f"data.path={tiny_data}", *SMALL, *extra]
    rows = study.main(argv)
    assert [(r["seed"], r["n_frames"], r["mode"]) for r in rows] == [
        (s, n, m) for s in (0, 1) for n in (2, 4) for m in ("ef", "sannp")]  # n=999 skipped
    for r in rows:
        assert r["epochs"] == 2 and r["stage1_epochs"] == (1 if r["mode"] == "sannp" else 0)
        assert r["optimizer"] == ("LBFGS" if optim == "lbfgs" else "AdamW")
        for key in study.METRICS:
            assert r[key] is not None and r[key] > 0
    data = json.loads((out / "learning_curves.json").read_text())
    assert data["meta"]["n_test"] == 3 and len(data["rows"]) == 8
    table = (out / "learning_curves.md").read_text()
    assert "2 seed(s) [0, 1]" in table
    body = [line for line in table.splitlines() if line.startswith(("| 2 |", "| 4 |"))]
    assert len(body) == 4 and all(line.count("±") == 5 for line in body)  # 5 error columns
    assert (out / "learning_curves.png").stat().st_size > 0
    summary = study.summarize(rows)
    mean, std, count = summary[(2, "ef")]["test/forces_rmse"]
    values = [r["test/forces_rmse"] for r in rows if r["n_frames"] == 2 and r["mode"] == "ef"]
    assert count == 2 and mean == pytest.approx(sum(values) / 2)
    assert std == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    if optim == "lbfgs":  # --resume: nothing left to run for these seeds; a new seed adds only its own rows
        again = study.main(_with(argv, ["--resume"], seeds=["0", "1", "2"]))
        assert len(again) == 12 and again[:8] == rows
        assert {r["seed"] for r in again[8:]} == {2}
        with pytest.raises(SystemExit):  # another budget cannot resume these rows
            study.main(_with(argv, ["--resume"], steps="8"))


def _with(argv, extra, seeds=None, steps=None):
    """argv with other --seeds / --steps and extra options placed before the overrides (after '--')."""
    argv = list(argv)
    if seeds is not None:
        i = argv.index("--seeds")
        argv[i + 1:i + 3] = seeds
    if steps is not None:
        argv[argv.index("--steps") + 1] = steps
    cut = argv.index("--")
    return argv[:cut] + extra + argv[cut:]
