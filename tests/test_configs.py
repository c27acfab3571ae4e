"""One config language for mlpot-md and mlpot-evaluate (``_target_``, as training), the shared config root and each
app's own ``--help``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from mlpot.calculator import MLPotCalculator
from mlpot.cli import CONF_DIR, rename_overrides
from mlpot.errors import DataPathError, SimulationConfigError
from mlpot.md.calculators import MonitoredCalculator, calculator_config, make_calculator
from mlpot.md.ensembles import Bussi, make_ensemble
from mlpot.md.structures import make_structure

pytestmark = pytest.mark.usefixtures("one_thread")


def energy(calc, atoms=None):
    atoms = (atoms or bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))).copy()
    atoms.rattle(0.05, seed=1)
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


def compose(name, *overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(name, overrides=list(overrides))


# --- calculators --------------------------------------------------------------------------------------------------
def test_any_ase_calculator_by_target():
    calc = make_calculator({"_target_": "ase.calculators.lj.LennardJones", "sigma": 2.338, "epsilon": 0.409, "rc": 5.0})
    assert isinstance(calc, LennardJones)
    e, f = energy(calc)
    e_ref, f_ref = energy(LennardJones(sigma=2.338, epsilon=0.409, rc=5.0))
    assert e == pytest.approx(e_ref, abs=1e-12) and np.allclose(f, f_ref, atol=1e-12)
    assert e != pytest.approx(energy(LennardJones(sigma=2.3, epsilon=0.409, rc=5.0))[0])  # the parameters arrived


def test_shorthands_and_old_kind_map_to_targets(tmp_path):
    assert calculator_config("emt") == {"_target_": "ase.calculators.emt.EMT"}
    assert calculator_config("Cu.eam.alloy") == {"_target_": "mlpot.md.calculators.eam", "path": "Cu.eam.alloy"}
    assert calculator_config("run/model.pt") == {"_target_": "mlpot.md.calculators.model", "path": "run/model.pt"}
    assert calculator_config({"kind": "model", "path": "m.pt", "dtype": "float32"}) == {
        "_target_": "mlpot.md.calculators.model", "path": "m.pt", "dtype": "float32"}
    assert calculator_config({"kind": "emt"}) == {"_target_": "ase.calculators.emt.EMT"}
    assert isinstance(make_calculator("emt"), EMT)
    with pytest.raises(SimulationConfigError, match=r"^reference: unknown kind 'lj'"):
        calculator_config({"kind": "lj"}, "reference")


def test_n2p2_folder_by_target_and_by_path(n2p2_folder):
    from mlpot.io.n2p2 import load
    from mlpot.units import BOHR, HARTREE

    e_ref, f_ref = energy(MLPotCalculator(load(n2p2_folder)))
    calc = make_calculator(str(n2p2_folder))  # a folder holding input.nn
    assert isinstance(calc, MonitoredCalculator)
    e, f = energy(calc)
    assert e == pytest.approx(e_ref, abs=1e-10) and np.allclose(f, f_ref, atol=1e-10)
    bohr = make_calculator({"_target_": "mlpot.md.calculators.n2p2", "path": str(n2p2_folder),
                            "length_unit": "bohr", "energy_unit": "hartree"})
    e_b = energy(bohr)[0]
    e_b_ref = energy(MLPotCalculator(load(n2p2_folder, length_unit=BOHR, energy_unit=HARTREE)))[0]
    assert e_b == pytest.approx(e_b_ref, abs=1e-10) and e_b != pytest.approx(e)
    with pytest.raises(SimulationConfigError, match=r"calculator.length_unit must be a number or one of"):
        make_calculator({"_target_": "mlpot.md.calculators.n2p2", "path": str(n2p2_folder), "length_unit": "inch"})


@pytest.mark.parametrize("cfg, match", [
    ({"_target_": "ase.calculators.no_such.Calculator"}, r"^reference \(ase\.calculators\.no_such\.Calculator\): "),
    ({"_target_": "collections.OrderedDict"}, r"^reference: _target_ collections.OrderedDict built a OrderedDict, not an ASE"),
    ({"_target_": "mlpot.md.calculators.model", "path": "m.pt", "no_such_option": 1},
     r"^reference \(mlpot.md.calculators.model\): .*no_such_option"),
    ({"path": "m.pt"}, r"^reference: no _target_"),
    ("???", r"^reference is not set"),
    ({"_target_": "mlpot.md.calculators.n2p2", "path": "???"}, r"^reference.path is not set \(mlpot.md.calculators.n2p2"),
])
def test_bad_calculator_configs_are_one_line_naming_the_key(cfg, match):
    with pytest.raises(SimulationConfigError, match=match) as info:
        make_calculator(cfg, "reference")
    assert "\n" not in str(info.value)


def test_missing_eam_file_names_it(tmp_path):
    with pytest.raises(DataPathError, match=r"nope\.eam\.alloy"):
        make_calculator(str(tmp_path / "nope.eam.alloy"))


# --- structures and ensembles -------------------------------------------------------------------------------------
def test_structures_and_ensembles_by_target():
    atoms = make_structure({"_target_": "ase.build.bulk", "name": "Cu", "crystalstructure": "fcc", "a": 3.6,
                            "cubic": True})
    assert len(atoms) == 4
    old = make_structure({"kind": "bulk", "element": "Cu", "a": 3.6, "repeat": [2, 2, 2]})
    new = make_structure({"_target_": "mlpot.md.structures.bulk_supercell", "element": "Cu", "a": 3.6,
                          "repeat": [2, 2, 2], "melt": {"heat_steps": 1}})  # melt is the app's, not the builder's
    assert np.allclose(old.positions, new.positions) and len(new) == 32
    with pytest.raises(SimulationConfigError, match=r"structure: _target_ builtins.dict built a dict, not ase.Atoms"):
        make_structure({"_target_": "builtins.dict"})
    assert make_ensemble({"kind": "bussi", "taut_fs": 50.0}) == Bussi(taut_fs=50.0)
    ens = make_ensemble({"_target_": "mlpot.md.ensembles.Bussi", "taut_fs": 50.0})
    assert ens.name == "bussi" and ens.options == {"taut_fs": 50.0}
    with pytest.raises(SimulationConfigError, match=r"ensemble: unknown kind 'nvt'"):
        make_ensemble({"kind": "nvt"})
    with pytest.raises(SimulationConfigError, match=r"ensemble \(mlpot.md.ensembles.Bussi\): .*friction"):
        make_ensemble({"_target_": "mlpot.md.ensembles.Bussi", "friction_per_fs": 0.1})


def test_md_app_with_any_ase_calculator_and_old_kind_configs(tmp_path):
    from mlpot.md.app import run

    common = ["progress=false", "steps=4", "interval=2", "structure.repeat=[2,2,2]", "md/ensemble=nve"]
    lj = run(compose("md", f"output_dir={tmp_path / 'lj'}", "md/calculator=lj", *common))
    emt = run(compose("md", f"output_dir={tmp_path / 'emt'}", *common))
    cfg = compose("md", f"output_dir={tmp_path / 'old'}", *common)
    from omegaconf import open_dict

    with open_dict(cfg):  # a config file of mlpot <= 0.2: the kind: form
        cfg.calculator, cfg.ensemble = {"kind": "emt"}, {"kind": "nve"}
        cfg.structure = {"kind": "bulk", "element": "Cu", "a": 3.5898, "repeat": [2, 2, 2]}
    old = run(cfg)
    short = run(compose("md", f"output_dir={tmp_path / 'short'}", "calculator=emt", *common))  # a shorthand
    assert lj["steps"] == emt["steps"] == old["steps"] == short["steps"] == 4
    first = [float((tmp_path / d / "thermo.csv").read_text().splitlines()[1].split(",")[2])
             for d in ("lj", "emt", "old", "short")]  # epot at step 0
    assert first[1] == pytest.approx(first[2]) == first[3] and first[0] != pytest.approx(first[1])  # LJ really ran


# --- evaluate: its keys in the shared root ------------------------------------------------------------------------
def test_evaluate_composes_in_the_shared_root_and_old_spellings_map(tmp_path):
    from mlpot.evaluate.app import RENAMES, _calculator

    argv = rename_overrides(["model=run/model.pt", "suite=quick", "suite.eos.n_points=5", "reference=emt"], RENAMES)
    assert argv == ["potential=run/model.pt", "evaluate/suite=quick", "suite.eos.n_points=5", "reference=emt"]
    cfg = compose("evaluate", *argv)
    assert cfg.potential == "run/model.pt" and cfg.suite.eos.n_points == 5 and cfg.suite.nve.steps == 200  # quick
    cfg = compose("evaluate", "potential=m.pt",
                  "reference={_target_: ase.calculators.lj.LennardJones, sigma: 2.338, epsilon: 0.409, rc: 5.0}")
    from omegaconf import OmegaConf

    ref = _calculator(OmegaConf.to_container(cfg.reference), "float64", "reference")
    assert isinstance(ref, LennardJones) and ref.parameters.sigma == 2.338


def _help(main, capsys, monkeypatch):
    """The groups an app's --help lists (in-process: Hydra prints the help and returns)."""
    monkeypatch.setattr(sys, "argv", ["app", "--help"])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    text = capsys.readouterr().out
    groups = text.split("== Config groups", 1)[1].split("== Config (", 1)[0]
    return {line.split(":")[0] for line in groups.splitlines()[1:] if ":" in line}


def test_each_app_help_lists_only_its_own_groups(capsys, monkeypatch):
    from mlpot.evaluate.app import main as evaluate
    from mlpot.md.app import main as md
    from mlpot.train import main as train

    groups = _help(train, capsys, monkeypatch)
    assert {"descriptor", "model", "optim", "experiment", "hydra/sweeper", "hydra/launcher"} <= groups
    assert not any(g.startswith(("md", "evaluate", "deploy")) for g in groups), groups
    assert _help(md, capsys, monkeypatch) == {"md/calculator", "md/ensemble", "md/structure", "md/experiment"}
    assert _help(evaluate, capsys, monkeypatch) == {"evaluate/suite"}
