"""Hardening (issue 17): every mistake a new user makes gets one line naming the file, frame or key; nothing that
trains a wrong model passes silently; nothing written is lost; the apps are quiet and say where the results are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from mlpot.errors import CheckpointError, ConfigError, MDInstabilityError, OverlappingAtomsError
from tests.helpers import train_config

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["trainer.max_epochs=1", "data.batch_size=4", "descriptor.cutoff=4.0", "descriptor.angular.rc=3.5",
         "model.hidden=[6]"]


def _cli(args, cwd, app="mlpot.train", env=None, timeout=600):
    env = {**os.environ, **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", app, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _emt_frames(n=12, seed=0, symbols="Cu"):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk(symbols, "fcc", a=3.6, cubic=True)
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        a.get_potential_energy()
        a.get_forces()
        a.info["config_type"] = "bulk"
        out.append(a)
    return out


# -- the command line -----------------------------------------------------------------------------------
def test_user_errors_are_one_line_without_traceback(tmp_path):
    res = _cli(["data=xyz", "data.path=/no/such/data.xyz", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "mlpot-train: error: /no/such/data.xyz: data path does not exist" in res.stderr
    assert "Traceback" not in res.stderr and "HYDRA_FULL_ERROR=1" in res.stderr


def test_wrongly_typed_value_is_caught_before_the_data(tmp_path):
    res = _cli(["trainer.max_epochs=abc", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert res.returncode == 2
    assert "trainer.max_epochs: must be an integer (the default is 60), got 'abc'" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "outputs").exists()  # nothing generated or converted


def test_bad_keys_name_the_key(tmp_path):
    frames = _emt_frames(6)
    path = tmp_path / "d.extxyz"
    ase.io.write(path, frames)
    res = _cli(["data=xyz", f"data.path={path}", "data.keys.stress_unit=abc", f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert res.returncode == 2 and "data.keys.stress_unit: must be a number" in res.stderr, res.stderr
    res = _cli(["data=xyz", f"data.path={path}", "data.keys.energy=dft_energy", f"hydra.run.dir={tmp_path}/run",
                *QUICK], tmp_path)
    assert res.returncode == 2 and "no 'energy' label (no key 'dft_energy' in the frame)" in res.stderr, res.stderr


def test_quiet_output_and_a_summary_at_the_end(tiny_data, tmp_path):
    """No progress-bar carriage returns in a log file, no advertising tips or deprecation noise; the end names the
    test errors, model.pt and the run folder."""
    run = tmp_path / "run"
    res = _cli([f"data.path={tiny_data}", f"hydra.run.dir={run}", f"data.cache_dir={tmp_path}/cache", *QUICK], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stdout + res.stderr
    for noise in ("Tip:", "LeafSpec", "logging interval", "litlogger"):
        assert noise not in res.stdout + res.stderr, noise
    assert f"model: {run / 'model.pt'}" in res.stdout and f"run folder: {run}" in res.stdout
    assert "test: energy_per_atom RMSE" in res.stdout
    hparams = (run / "logs" / "version_0" / "hparams.yaml").read_text()
    assert "descriptor:" in hparams and "functions" not in hparams or "cutoff" in hparams


def test_tensorboard_carries_the_config(tiny_data, tmp_path):
    pytest.importorskip("tensorboardX")
    from mlpot.train import run

    run(train_config(tmp_path, tiny_data, "logger=tensorboard", "trainer.max_epochs=1", "export=false"))
    (hp,) = (tmp_path / "tensorboard").rglob("hparams.yaml")
    text = hp.read_text()
    assert "descriptor" in text and "optim" in text and "seed" in text


# -- data checks ------------------------------------------------------------------------------------
def _write(path, frames):
    ase.io.write(path, frames)
    return path


def _dm(path, tmp_path, **kw):
    from mlpot.data.datamodule import AtomsDataModule

    dm = AtomsDataModule(path=path, cache_dir=tmp_path / "cache", **kw)
    dm.load()
    return dm


def test_element_only_in_test_is_an_error(tmp_path):
    from mlpot.data.checks import DataCheckError

    frames = _emt_frames(10)
    odd = bulk("Cu", "fcc", a=3.6, cubic=True)
    odd[0].symbol = "Au"
    odd.info["config_type"] = "bulk"  # the same trajectory: the tail split puts it last, in the test split
    odd.calc = EMT()
    odd.get_potential_energy()
    path = _write(tmp_path / "d.extxyz", frames + [odd])
    dm = _dm(path, tmp_path, split={"kind": "tail", "fractions": [0.8, 0.1, 0.1]})
    with pytest.raises(DataCheckError, match=r"d.extxyz, frame 10: element Au appears in the test split .* "
                                             r"untrained .*data.checks.unseen_elements=warn"):
        dm.check()
    dm.checks.unseen_elements = "warn"
    assert dm.check()["atoms"]["test"]["Au"] == 1


def test_absurd_energy_is_an_error_naming_its_frame(tmp_path, caplog):
    from mlpot.data.checks import DataCheckError

    frames = _emt_frames(30)
    frames[7].calc.results["energy"] += 1e6
    path = _write(tmp_path / "d.extxyz", frames)
    dm = _dm(path, tmp_path, split={"kind": "tail", "fractions": [0.8, 0.1, 0.1]})
    with pytest.raises(DataCheckError, match=r"frame 7: energy .* eV/atom off the composition fit"):
        dm.check()
    dm.checks.energy_outliers = "warn"
    assert dm.check()["outliers"] == 1 and "frame 7" in caplog.text


def test_duplicates_and_short_distances_are_warnings(tmp_path, caplog):
    frames = _emt_frames(20)
    close = bulk("Cu", "fcc", a=3.6, cubic=True)
    close.positions[1] = close.positions[0] + [0.25, 0, 0]
    close.calc = EMT()
    close.get_potential_energy()
    path = _write(tmp_path / "d.extxyz", frames + [frames[3], close])
    dm = _dm(path, tmp_path, split={"kind": "tail", "fractions": [0.5, 0.25, 0.25]},
             checks={"energy_outliers": "warn"})  # the close pair is also an energy outlier
    out = dm.check()
    assert out["duplicates"] == 1 and out["short"] == 1
    assert "identical to training frames" in caplog.text and "0.25 Å apart" in caplog.text


def test_overlapping_atoms_stop_the_conversion_naming_the_frame(tmp_path):
    frames = _emt_frames(3)
    bad = frames[2].copy()
    bad.positions[1] = bad.positions[0] + [0.05, 0, 0]
    bad.calc = EMT()
    path = _write(tmp_path / "d.extxyz", frames[:2] + [bad])
    with pytest.raises(OverlappingAtomsError, match=r"d.extxyz, frame 2: atoms 0 and 1 are 0.05 Å apart"):
        _dm(path, tmp_path)


def test_bad_check_switch_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.checks.duplicates: must be one of error, warn, off"):
        _dm(_write(tmp_path / "d.extxyz", _emt_frames(4)), tmp_path, checks={"duplicates": "maybe"})


# -- checkpoints and fine-tuning --------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    from mlpot.train import run

    out = tmp_path_factory.mktemp("trained")
    run(train_config(out, tiny_data, "trainer.max_epochs=2", "dtype=float64"))
    return out


def test_bad_checkpoints_are_named(trained, tiny_data, tmp_path):
    from mlpot.train import run

    def attempt(path, *extra):
        with pytest.raises(CheckpointError) as err:
            run(train_config(tmp_path / "r", tiny_data, "trainer.max_epochs=3", "dtype=float64", f"ckpt_path={path}",
                             *extra))
        return str(err.value)

    assert "init_from=" in attempt(trained / "model.pt")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    assert "empty checkpoint file (0 bytes" in attempt(empty)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes()[:2000])
    assert "not a readable checkpoint" in attempt(cut)
    assert "no such checkpoint file" in attempt(tmp_path / "none.ckpt")
    assert "trained with other head settings hidden" in attempt(trained / "checkpoints" / "last.ckpt",
                                                                 "model.hidden=[5,5]")


def test_checkpoint_of_other_elements_is_refused(trained, tmp_path):
    from mlpot.train import run

    si = _emt_frames(12, symbols="Ni")
    path = _write(tmp_path / "ni.extxyz", si)
    with pytest.raises(CheckpointError, match=r"trained with other elements \['Cu'\] \(this run: \['Ni'\]\)"):
        run(train_config(tmp_path / "r", path, "trainer.max_epochs=3", "dtype=float64",
                         f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"))


def test_init_from_an_exported_model(trained, tiny_data, tmp_path):
    """Fine-tuning starts from the model's predictions exactly, trains with a fresh optimiser on new data, and
    refuses data with an element the model does not know."""
    import mlpot
    from mlpot.train import build, run

    model = mlpot.load(trained / "model.pt")
    cfg = train_config(tmp_path / "ft", tiny_data, "trainer.max_epochs=1", "dtype=float64",
                       f"init_from={trained / 'model.pt'}", "descriptor.cutoff=3.0")  # descriptor= is not used
    dm, pot, _ = build(cfg)
    frames = dm.atoms("test")[:3]
    torch.testing.assert_close(pot.predict(frames)["forces"], model.predict(frames)["forces"], rtol=0, atol=1e-12)
    metrics = run(cfg)
    assert (tmp_path / "ft" / "model.pt").exists() and metrics["epochs"] == 1
    au = _emt_frames(6, symbols="Au")
    with pytest.raises(CheckpointError, match="element.* Au that the model .* was not trained on"):
        build(train_config(tmp_path / "x", _write(tmp_path / "au.extxyz", au), f"init_from={trained / 'model.pt'}"))


# -- artefacts and resume ---------------------------------------------------------------------------------
def test_model_is_written_first_and_a_failing_plot_is_a_warning(tiny_data, tmp_path, monkeypatch, caplog):
    import mlpot.training.report as report
    from mlpot.train import run

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "plot_parity", full_disk)
    run(train_config(tmp_path, tiny_data, "trainer.max_epochs=1"))
    assert (tmp_path / "model.pt").exists() and (tmp_path / "metrics.json").exists()
    assert (tmp_path / "history.json").exists() and "plots not written" in caplog.text


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from mlpot.training.checkpoints import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, path)
    good = path.read_bytes()

    def full_disk(obj, f, *a, **k):  # a write that stops half-way
        if isinstance(f, (str, Path)):
            Path(f).write_bytes(b"")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        io.save_checkpoint({"a": torch.zeros(3)}, path)
    assert path.read_bytes() == good and not list(tmp_path.glob(".*tmp"))


def test_resume_keeps_the_whole_history_and_time(tiny_data, tmp_path):
    from mlpot.train import run

    run(train_config(tmp_path, tiny_data, "trainer.max_epochs=2"))
    first = json.loads((tmp_path / "metrics.json").read_text())["train_seconds"]
    m = run(train_config(tmp_path, tiny_data, "trainer.max_epochs=4",
                         f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"))
    hist = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert m["train_seconds"] > first


# -- threads ----------------------------------------------------------------------------------------
def test_threads_from_the_free_cores(monkeypatch):
    import mlpot.system as system

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(system, "_others_running", lambda: 0)
    assert system.choose_threads()[0] == 2
    assert system.choose_threads(processes=2)[0] == 1
    monkeypatch.setattr(system, "_others_running", lambda: 1)  # one other busy process on 2 cores
    assert system.choose_threads()[0] == 1
    assert system.choose_threads(3) == (3, "threads=3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's setting wins over the automatic choice
    assert system.choose_threads() == (1, "OMP_NUM_THREADS=1")
    with pytest.raises(ConfigError, match="threads: must be a positive integer"):
        system.choose_threads("many")


# -- MD -------------------------------------------------------------------------------------------------
def test_collapsing_md_stops_with_step_and_last_good_frame(tmp_path):
    from mlpot.md.runner import run_md

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.positions[0] = atoms.positions[1] + [0.3, 0.0, 0.0]  # driven together by EMT's repulsion at the start
    with pytest.raises(MDInstabilityError, match=r"MD step \d+: .*last good frame in .*last_good.extxyz") as err:
        run_md(atoms, EMT(), output_dir=tmp_path, ensemble="nve", steps=200, timestep_fs=5.0, progress=False,
               init_velocities=False, max_energy_change_per_atom=1e9, max_force=1e9)
    assert (tmp_path / "md.last_good.extxyz").exists()
    assert "step" in str(err.value)


def test_restart_from_a_trajectory_cut_short(tmp_path):
    from mlpot.md.runner import run_md

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    run_md(atoms, EMT(), output_dir=tmp_path, ensemble="nve", steps=20, timestep_fs=1.0, interval=5, progress=False,
           temperature_K=300.0)
    traj = tmp_path / "md.extxyz"
    text = traj.read_text()
    traj.write_text(text[: len(text) - 500])  # the last frame cut short (a killed run)
    out = run_md(bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2), EMT(), output_dir=tmp_path, ensemble="nve",
                 steps=30, timestep_fs=1.0, interval=5, progress=False, restart=True, temperature_K=300.0)
    assert out["start_step"] == 15
    steps = [a.info["step"] for a in ase.io.read(traj, ":")]
    assert steps == [0, 5, 10, 15, 20, 25, 30]


def test_one_atom_with_velocities_gives_no_nan(tmp_path):
    from mlpot.md.runner import run_md

    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 2.55, pbc=True)
    for ensemble in ("nve", "langevin", "bussi"):
        out = run_md(atoms.copy(), EMT(), output_dir=tmp_path / ensemble, ensemble=ensemble, steps=10,
                     timestep_fs=1.0, interval=5, progress=False, temperature_K=300.0)
        assert np.isfinite(out["final_temperature_K"]), ensemble
        for a in ase.io.read(tmp_path / ensemble / "md.extxyz", ":"):
            assert np.all(np.isfinite(a.positions)) and np.all(np.isfinite(a.get_momenta()))


# -- packaging ------------------------------------------------------------------------------------------
def test_configs_ship_inside_the_package():
    import mlpot
    from mlpot.train import CONF_DIR

    assert Path(CONF_DIR) == Path(mlpot.__file__).parent / "conf"
    assert (Path(CONF_DIR) / "train.yaml").exists() and (ROOT / "conf" / "train.yaml").exists()
    toml = (ROOT / "pyproject.toml").read_text()
    assert '"conf/**/*.yaml"' in toml
