"""mlpot-active: the loop on EMT Cu with a tiny committee (seconds per member), its log, and resuming."""

import json
import shutil

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlpot.active.loop import STATE, exploration_structure, run_loop, select
from mlpot.errors import SimulationConfigError

TINY = ["trainer.max_epochs=2", "descriptor.cutoff=4.0", "descriptor.angular.rc=3.5", "model.hidden=[8,8]",
        "data.batch_size=4", "threads=1", "callbacks=default", "loss.stress=100.0"]


def config(**over):
    c = {
        "system": {"element": "Cu", "crystal": "fcc", "a": 3.61},
        "initial": {"path": None, "n_frames": 10, "repeat": [1, 1, 1], "rattle": 0.1, "strain": 0.03},
        "committee": {"size": 2, "dtype": None, "train": TINY},
        "explore": {"structures": ["bulk", "vacancy"], "temperatures_K": [600.0], "repeat": [2, 2, 2], "steps": 20,
                    "interval": 5, "timestep_fs": 2.0},
        "select": {"lower": 0.0, "upper": 50.0, "max_per_iteration": 3, "min_gap": 2},
        "budget": {"iterations": 2, "max_labelled": 300},
        "seed": 0,
    }
    for k, v in over.items():
        c[k] = {**c[k], **v}
    return c


def test_select_band_gap_and_cap():
    from ase import Atoms

    frames = []
    for traj, sig in (("a", [0.01, 0.3, 0.5, 0.4, 2.0]), ("b", [0.2, 0.25])):
        for k, s in enumerate(sig):
            f = Atoms("Cu")
            f.info.update(trajectory=traj, step=10 * k, interval=10, max_force_std=s)
            frames.append(f)
    # band [0.1, 1.0]: a@1 (0.3) a@2 (0.5) a@3 (0.4) b@0 (0.2) b@1 (0.25); largest first, min_gap 2 drops
    # neighbours of a chosen frame in its trajectory
    assert select(frames, 0.1, 1.0, 10, 2) == [2, 6]
    assert select(frames, 0.1, 1.0, 10, 1) == [1, 2, 3, 5, 6]
    assert select(frames, 0.1, 1.0, 1, 1) == [2]
    assert select(frames, 3.0, 4.0, 10, 1) == []


def test_structures():
    assert len(exploration_structure("vacancy", "Cu", "fcc", 3.61, [2, 2, 2])) == 31
    comp = exploration_structure("compressed", "Cu", "fcc", 3.61, [2, 2, 2])
    assert comp.get_volume() == pytest.approx(0.92 * 8 * 3.61**3)
    with pytest.raises(SimulationConfigError, match="unknown structure 'moon'"):
        exploration_structure("moon", "Cu", "fcc", 3.61, [2, 2, 2])


def test_loop_log_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "al"
    state = run_loop(config(), EMT(), out)
    assert state["status"] == "budget"
    its = state["iterations"]
    assert [r["iteration"] for r in its] == [0, 1]
    assert its[0]["n_labelled"] == 10 and its[0]["n_selected"] == 3 and its[1]["n_labelled"] == 13
    assert its[0]["thresholds"]["lower"] == 0.0 and its[0]["thresholds"]["max_per_iteration"] == 3
    assert "val/forces_rmse" in its[0]["metrics"] and len(its[1]["members"]) == 2
    # the reference's stress reaches the members' loss (mlpot-train weights a data file's stress 0 by default)
    import yaml

    member_cfg = yaml.safe_load((out / "iter_000" / "members" / "m0" / "config_resolved.yaml").read_text())
    assert member_cfg["loss"]["stress"] == 100.0
    assert all(f.get_stress().shape == (6,) for f in ase.io.read(str(out / "iter_001" / "labelled.extxyz"), index=":"))
    assert its[1]["model"].endswith("iter_001/committee.pt") and state["final_model"] == its[1]["model"]
    from mlpot.export import load
    from mlpot.models.committee import Committee

    assert isinstance(load(its[1]["model"]), Committee)
    assert json.loads((out / STATE).read_text()) == state
    new = ase.io.read(str(out / "iter_001" / "labelled.extxyz"), index=":")[10:]
    assert all(f.info["config_type"].startswith("active_0_") for f in new)
    ref = EMT()
    for f in new:  # labelled by the reference
        g = f.copy()
        g.calc = ref
        assert np.allclose(f.get_forces(), g.get_forces(), atol=1e-6)  # positions written to 1e-8 Å

    # interrupted after iteration 0's training: its exploration, selection and the next data are gone
    selected = (out / "iter_000" / "selected.json").read_text()
    labelled = (out / "iter_001" / "labelled.extxyz").read_text()
    for name in ("candidates.extxyz", "explore.json", "selected.json"):
        (out / "iter_000" / name).unlink()
    shutil.rmtree(out / "iter_001")
    state0 = json.loads((out / STATE).read_text())
    state0["iterations"] = state0["iterations"][:1]
    (out / STATE).write_text(json.dumps(state0))
    resumed = run_loop(config(budget={"iterations": 1}), EMT(), out)  # stops after training iteration 0 again
    assert resumed["iterations"][0]["model"] == its[0]["model"]
    state1 = run_loop(config(budget={"iterations": 2}), EMT(), out)
    assert (out / "iter_000" / "selected.json").read_text() == selected
    assert state1["iterations"][0]["selected"] == its[0]["selected"]
    assert (out / "iter_001" / "labelled.extxyz").read_text() == labelled


def test_bad_config(tmp_path):
    with pytest.raises(SimulationConfigError, match="lower < upper"):
        run_loop(config(select={"lower": 1.0, "upper": 0.5}), EMT(), tmp_path)
    with pytest.raises(SimulationConfigError, match="at least 2 members"):
        run_loop(config(committee={"size": 1}), EMT(), tmp_path)


def test_committee_split(tmp_path, monkeypatch):
    """committee.split: 'same' hands every member the run's split seed, 'different' none (each member's split then
    follows its own seed: bagging); anything else is one clear error."""
    import mlpot.active.loop as loop

    seen = []

    class Stop(Exception):
        pass

    def fake_member(labelled, run_dir, seed, overrides, split_seed=None):
        seen.append((seed, split_seed))
        if len(seen) % 2 == 0:
            raise Stop
        return run_dir / "model.pt"

    monkeypatch.setattr(loop, "train_member", fake_member)
    for split, expected in (("same", [0, 0]), ("different", [None, None])):
        seen.clear()
        with pytest.raises(Stop):
            run_loop(config(committee={"size": 2, "split": split}), EMT(), tmp_path / split)
        assert [s for _, s in seen] == expected and seen[0][0] != seen[1][0]
    with pytest.raises(SimulationConfigError, match="committee.split"):
        run_loop(config(committee={"size": 2, "split": "bagged"}), EMT(), tmp_path / "bad")


def test_train_members_parallel(tmp_path, monkeypatch):
    """committee.parallel: members trained at once keep their order, seeds and folders; a failing member is raised
    and members not yet started are not started; parallel < 1 is one clear error."""
    import threading
    import time

    import mlpot.active.loop as loop

    started, running, peak = [], [0], [0]
    lock = threading.Lock()

    def fake_member(labelled, run_dir, seed, overrides, split_seed=None):
        with lock:
            started.append(seed)
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        if seed == 13:
            raise SimulationConfigError(f"committee member {run_dir} failed to train")
        return run_dir / "model.pt"

    monkeypatch.setattr(loop, "train_member", fake_member)
    models = loop.train_members(tmp_path / "l.extxyz", tmp_path / "members", [10, 11, 12, 14], [], parallel=2)
    assert models == [tmp_path / "members" / f"m{i}" / "model.pt" for i in range(4)]
    assert sorted(started) == [10, 11, 12, 14] and peak[0] == 2
    started.clear()
    with pytest.raises(SimulationConfigError, match="m1 failed"):
        loop.train_members(tmp_path / "l.extxyz", tmp_path / "members", [12, 13, 14, 15, 16, 17], [], parallel=2)
    assert 13 in started and len(started) < 6
    with pytest.raises(SimulationConfigError, match="committee.parallel"):
        run_loop(config(committee={"size": 2, "parallel": 0}), EMT(), tmp_path / "bad")


def test_preset_member_overrides_compose():
    """The preset's committee.train overrides compose into a valid mlpot-train config with the stress in the loss
    (the setting that put B and the elastic constants within target in docs/active_learning.md, run 5)."""
    from hydra import compose, initialize_config_dir

    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        active = compose("active", overrides=["output_dir=x"])
        assert active.committee.parallel == 1 and active.budget.iterations == 10 and active.committee.retrain_factor == 3.0
        train = compose("train", overrides=["data=xyz", "data.path=f.extxyz", "run_dir=x", *active.committee.train])
    assert train.loss.stress == 100.0 and train.trainer.max_epochs == 400 and train.descriptor.cutoff == 5.0


def test_retrain_poor_members(tmp_path, monkeypatch):
    """committee.retrain_factor: a member whose validation force RMSE is far above the committee's median (run 5,
    iteration 5 of docs/active_learning.md: 0.158 against ~0.024 eV/Å) is trained again with seed + 500, which takes
    its place; a bad factor is one clear error."""
    import mlpot.active.loop as loop

    rmse = {10: 0.02, 11: 0.025, 12: 0.16, 13: 0.022, 512: 0.03}
    trained = []

    def fake_member(labelled, run_dir, seed, overrides, split_seed=None):
        trained.append((run_dir.name, seed))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps({"val/forces_rmse": rmse[seed]}))
        return run_dir / "model.pt"

    monkeypatch.setattr(loop, "train_member", fake_member)
    d = tmp_path / "members"
    models = loop.train_members(tmp_path / "l.extxyz", d, [10, 11, 12, 13], [])
    kept, poor = loop.retrain_poor_members(models, tmp_path / "l.extxyz", d, [10, 11, 12, 13], [], 3.0)
    assert poor == [2] and trained[-1] == ("m2_retry", 512) and kept[2] == d / "m2_retry" / "model.pt"
    assert kept[:2] == models[:2] and kept[3] == models[3]
    assert loop.retrain_poor_members(models, tmp_path / "l.extxyz", d, [10, 11, 12, 13], [], None) == (models, [])
    with pytest.raises(SimulationConfigError, match="retrain_factor"):
        run_loop(config(committee={"size": 2, "retrain_factor": 0.5}), EMT(), tmp_path / "bad")
