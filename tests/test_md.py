"""mlpot-md: calculators (model, committee, EMT), ASE ensembles, writers, restart, stability checks,
extrapolation monitor and bad input. Tiny systems and few steps (EMT Cu, 32 atoms)."""

from __future__ import annotations

import csv

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from mlpot.data.graph import atoms_to_graph
from mlpot.errors import (ExtrapolationError, MDInstabilityError, ModelFileError, OutputPathError,
                          SimulationConfigError, UnknownElementError)
from mlpot.export import save
from mlpot.md import ENSEMBLES, CommitteeCalculator, make_calculator, make_structure, run_md, thermalize
from mlpot.md.structures import fix_atoms

from tests.conftest import build_tiny_potential


def cu(repeat=2, a=3.59):
    return bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)


def fitted_tiny(seed=0):
    """The tiny Cu potential with its scaler fitted on a rattled fcc crystal (a realistic training range)."""
    torch.manual_seed(seed)
    pot = build_tiny_potential()
    if seed:
        for p in pot.head.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
    frames = []
    for k in range(4):
        a = cu()
        a.rattle(0.05, seed=k)
        frames.append(a)
    g = atoms_to_graph(frames, pot.elements, pot.cutoff, with_labels=False)
    with torch.no_grad():
        pot.scaler.fit(pot.features(g), g.species)
    return pot


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save(fitted_tiny(), tmp_path_factory.mktemp("model") / "model.pt")


def read_thermo(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- runs -----------------------------------------------------------------------------------------
def test_nve_conserves_energy_and_writes_every_k_steps(tmp_path):
    atoms = cu()
    s = run_md(atoms, EMT(), output_dir=tmp_path, ensemble="nve", steps=40, timestep_fs=1.0, temperature_K=300,
               interval=10, progress=False)
    rows = read_thermo(tmp_path / "thermo.csv")
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40]
    etot = np.array([float(r["etot_eV"]) for r in rows])
    assert np.ptp(etot) / len(atoms) < 2e-4  # eV/atom over 40 fs of velocity Verlet
    frames = ase.io.read(tmp_path / "md.extxyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 10, 20, 30, 40]
    assert s["steps_per_s"] > 0


def test_maxwell_boltzmann_zero_momentum():
    atoms = cu(3)
    thermalize(atoms, 500.0, np.random.default_rng(1))
    assert np.allclose(atoms.get_momenta().sum(0), 0.0, atol=1e-10)
    assert 300 < atoms.get_temperature() < 700


@pytest.mark.parametrize("ensemble", ENSEMBLES)
def test_every_ensemble_runs(tmp_path, ensemble):
    atoms = cu()
    run_md(atoms, EMT(), output_dir=tmp_path, ensemble=ensemble, steps=4, timestep_fs=2.0, temperature_K=500,
           interval=2, progress=False)
    assert len(read_thermo(tmp_path / "thermo.csv")) == 3


@pytest.mark.parametrize("suffix", [".traj", ".extxyz"])
def test_restart_continues_the_same_trajectory(tmp_path, suffix):
    """NVE is deterministic: 10 + 10 restarted steps give the state of 20 uninterrupted steps."""
    kw = dict(ensemble="nve", timestep_fs=2.0, temperature_K=400, interval=5, progress=False, seed=3,
              trajectory="md" + suffix)
    full = run_md(cu(), EMT(), output_dir=tmp_path / "full", steps=20, **kw)["atoms"]
    run_md(cu(), EMT(), output_dir=tmp_path / "split", steps=10, **kw)
    s = run_md(cu(), EMT(), output_dir=tmp_path / "split", steps=20, restart=True, **kw)
    assert s["start_step"] == 10
    tol = 1e-10 if suffix == ".traj" else 1e-6  # extxyz keeps 8 decimals
    assert np.allclose(s["atoms"].positions, full.positions, atol=tol)
    frames = ase.io.read(tmp_path / "split" / ("md" + suffix), index=":")
    assert [f.info["step"] for f in frames] == [0, 5, 10, 15, 20]
    assert [int(r["step"]) for r in read_thermo(tmp_path / "split" / "thermo.csv")] == [0, 5, 10, 15, 20]


def test_fixed_region_does_not_move(tmp_path):
    atoms = cu(3)
    mask = fix_atoms(atoms, {"region": {"axis": 2, "lo": 0.4, "hi": 0.6}})
    assert 0 < mask.sum() < len(atoms)
    start = atoms.positions.copy()
    out = run_md(atoms, EMT(), output_dir=tmp_path, ensemble="langevin", steps=10, timestep_fs=2.0,
                 temperature_K=800, interval=5, progress=False)["atoms"]
    moved = np.linalg.norm(out.positions - start, axis=1)
    assert np.all(moved[mask] == 0) and np.all(moved[~mask] > 0)


class _BreaksAfter(Calculator):
    """EMT that returns NaN from the n-th calculation on."""

    implemented_properties = ["energy", "forces", "free_energy"]

    def __init__(self, n):
        super().__init__()
        self.n, self.calls, self.emt = n, 0, EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        a = self.atoms.copy()
        a.calc = self.emt
        e, f = a.get_potential_energy(), a.get_forces()
        if self.calls >= self.n:
            e = float("nan")
        self.results = {"energy": e, "free_energy": e, "forces": f}


def test_nan_energy_stops_with_last_good_frame(tmp_path):
    with pytest.raises(MDInstabilityError, match=r"MD step \d+: NaN.*last good frame in .*md.last_good.extxyz"):
        run_md(cu(), _BreaksAfter(8), output_dir=tmp_path, ensemble="nve", steps=50, timestep_fs=1.0,
               temperature_K=300, interval=5, progress=False)
    good = ase.io.read(tmp_path / "md.last_good.extxyz")
    assert np.all(np.isfinite(good.positions)) and good.info["step"] >= 5


def test_exploding_energy_stops(tmp_path):
    atoms = cu()
    atoms.positions[0] = atoms.positions[1] + [0.0, 0.0, 0.9]  # nearly overlapping: large forces
    with pytest.raises(MDInstabilityError, match="force"):
        run_md(atoms, EMT(), output_dir=tmp_path, ensemble="nve", steps=5, temperature_K=300, max_force=5.0,
               progress=False)


# --- ML calculators and the extrapolation monitor ------------------------------------------------
def test_model_calculator_counts_extrapolating_atoms(model_file):
    calc = make_calculator({"kind": "model", "path": str(model_file)})
    atoms = cu()
    atoms.rattle(0.02, seed=9)
    atoms.calc = calc
    atoms.get_potential_energy()
    assert calc.results["n_extrapolating"] == 0  # inside the fitted range
    squeezed = cu(a=3.2)
    squeezed.calc = calc
    squeezed.get_potential_energy()
    # reference: the scaler's own out_of_range on the model's descriptors
    pot = calc.potential
    g = atoms_to_graph(squeezed, pot.elements, pot.cutoff, with_labels=False)
    expected = int(pot.scaler.out_of_range(pot.features(g).detach(), g.species).sum())
    assert calc.results["n_extrapolating"] == expected == len(squeezed)
    loose = make_calculator({"kind": "model", "path": str(model_file), "tolerance": 100.0})
    squeezed.calc = loose
    squeezed.get_potential_energy()
    assert loose.results["n_extrapolating"] == 0


def test_extrapolation_monitor_logs_and_stops(tmp_path, model_file):
    calc = make_calculator({"kind": "model", "path": str(model_file)})
    with pytest.raises(ExtrapolationError, match=r"MD step 0: 32 of 32 atoms outside"):
        run_md(cu(a=3.2), calc, output_dir=tmp_path, ensemble="nve", steps=5, temperature_K=100,
               max_extrapolating=3, progress=False)
    assert (tmp_path / "md.extrapolation.csv").read_text().startswith("0,32")
    # by default more than half of the atoms extrapolating stops the run too
    with pytest.raises(ExtrapolationError, match=r"MD step 0: 32 of 32 atoms outside .*limit 0.5"):
        run_md(cu(a=3.2), calc, output_dir=tmp_path / "c", ensemble="nve", steps=3, temperature_K=100, progress=False)
    # below the thresholds: warn and log per step, keep running
    run_md(cu(a=3.2), calc, output_dir=tmp_path / "b", ensemble="nve", steps=3, temperature_K=100,
           max_extrapolating=1000, max_extrapolating_fraction=None, progress=False)
    lines = (tmp_path / "b" / "md.extrapolation.csv").read_text().split()
    assert [int(x.split(",")[0]) for x in lines] == [0, 1, 2, 3]


def test_committee_is_mean_and_spread(tmp_path):
    paths = [save(fitted_tiny(seed=s), tmp_path / f"m{s}.pt") for s in (0, 1, 2)]
    committee = make_calculator({"kind": "committee", "paths": [str(p) for p in paths]})
    assert isinstance(committee, CommitteeCalculator)
    atoms = cu()
    atoms.rattle(0.03, seed=2)
    atoms.calc = committee
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    singles = []
    for p in paths:
        a = atoms.copy()
        a.calc = make_calculator(str(p))
        singles.append((a.get_potential_energy(), a.get_forces()))
    assert e == pytest.approx(np.mean([s[0] for s in singles]), abs=1e-10)
    assert np.allclose(f, np.mean([s[1] for s in singles], axis=0), atol=1e-10)
    assert committee.results["energy_std"] == pytest.approx(np.std([s[0] for s in singles]), abs=1e-10)
    assert committee.results["energy_std"] > 0


# --- builders and the Hydra app -------------------------------------------------------------------
def test_builders():
    assert len(make_structure({"kind": "bulk", "element": "Cu", "a": 3.6, "repeat": [2, 2, 2]})) == 32
    slab = make_structure({"kind": "surface", "element": "Cu", "a": 3.6, "miller": "111", "size": [2, 2, 3]})
    assert len(slab) == 12 and slab.cell[2, 2] > 20


def compose_md(*overrides):
    from hydra import compose, initialize_config_dir

    from mlpot.train import CONF_DIR

    small = [] if "md/structure=file" in overrides else ["structure.repeat=[2,2,2]"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("md", overrides=["progress=false", "steps=4", "interval=2", *small, *overrides])


def test_md_app_runs_emt_and_model(tmp_path, model_file):
    from mlpot.md.app import run

    s = run(compose_md(f"output_dir={tmp_path / 'emt'}"))
    assert s["steps"] == 4 and (tmp_path / "emt" / "md_summary.json").is_file()
    run(compose_md(f"output_dir={tmp_path / 'ml'}", "md/calculator=model", f"calculator.path={model_file}",
                   "md/ensemble=nve", "trajectory=md.traj", "fix={indices: [0, 1]}"))
    frames = ase.io.read(tmp_path / "ml" / "md.traj", index=":")
    assert len(frames) == 3 and np.allclose(frames[0].positions[:2], frames[-1].positions[:2])


# --- bad input: one clear error each -------------------------------------------------------------
def test_model_file_missing(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.pt: model file not found"):
        make_calculator({"kind": "model", "path": str(tmp_path / "nope.pt")})


def test_not_a_model(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text("not a model\n")
    with pytest.raises(ModelFileError, match=r"model\.pt: not an mlpot model file"):
        make_calculator(str(bad))


def test_unknown_element(tmp_path, model_file):
    from mlpot.md.app import run

    atoms = bulk("Au", "fcc", a=4.08, cubic=True)
    ase.io.write(tmp_path / "au.extxyz", atoms)
    with pytest.raises(UnknownElementError, match=r"au\.extxyz\): element\(s\) Au not among the known elements"):
        run(compose_md(f"output_dir={tmp_path / 'o'}", "md/calculator=model", f"calculator.path={model_file}",
                       "md/structure=file", f"structure.path={tmp_path / 'au.extxyz'}"))


@pytest.mark.parametrize("override, message", [("timestep_fs=0", "timestep_fs must be a positive number, got 0"),
                                               ("timestep_fs=-1", "timestep_fs must be a positive number"),
                                               ("temperature_K=0", "temperature_K must be a positive number"),
                                               ("temperature_K=-5", "temperature_K must be a positive number")])
def test_non_positive_timestep_or_temperature(tmp_path, override, message):
    from mlpot.md.app import run

    with pytest.raises(SimulationConfigError, match=message):
        run(compose_md(f"output_dir={tmp_path}", override))
    with pytest.raises(SimulationConfigError, match=message.split(",")[0]):
        key, value = override.split("=")
        kw = {"timestep_fs": 1.0, "temperature_K": 300.0, key: float(value)}
        run_md(cu(), EMT(), output_dir=tmp_path / "r", ensemble="langevin", steps=2, progress=False, **kw)


def test_trajectory_folder_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OutputPathError, match=r"trajectory folder .*file/traj is not writable"):
        run_md(cu(), EMT(), output_dir=blocker / "traj", steps=2, progress=False)


def test_growth_preset_and_melt_keep_the_seed_fixed():
    from mlpot.md.structures import melt

    cfg = compose_md("md/experiment=growth_cu", "structure.repeat=[2,2,4]")
    assert cfg.structure.melt and cfg.ensemble._target_ == "mlpot.md.ensembles.Bussi" and cfg.temperature_K < 1300
    atoms = make_structure(cfg.structure)
    seed = fix_atoms(atoms, cfg.fix)
    assert 0 < seed.sum() < len(atoms) / 4
    start = atoms.positions.copy()
    melt(atoms, EMT(), temperature_K=1000.0, heat_temperature_K=3000.0, heat_steps=10, equil_steps=0, timestep_fs=2.0)
    moved = np.linalg.norm(atoms.positions - start, axis=1)
    assert np.all(moved[seed] == 0) and np.all(moved[~seed] > 0)
