"""Committees: one model.pt for K members (round trip, format), the calculator's mean and spread against numpy,
deployment of the mean, MD thermo columns, the stop threshold and the collect band, training K members in one
command, combining existing files, and bad input."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch

from mlpot.calculator import MLPotCalculator
from mlpot.errors import ExtrapolationError, ModelFileError, SimulationConfigError
from mlpot.export import load, read_info, save, save_committee
from mlpot.md import run_md
from mlpot.models.committee import Committee, CommitteeError
from tests.helpers import random_cell, random_potential
from tests.test_md import compose_md, cu, fitted_tiny

pytestmark = pytest.mark.usefixtures("one_thread")
ELEMENTS = ["Cu", "S"]


def members(n=3):
    return [random_potential(ELEMENTS, seed=s) for s in range(n)]


@pytest.fixture(scope="module")
def committee_file(tmp_path_factory):
    return save_committee(members(), tmp_path_factory.mktemp("committee") / "model.pt")


@pytest.fixture(scope="module")
def md_committee(tmp_path_factory):
    """A Cu committee of 3 tiny members (fitted scalers, perturbed heads) for MD."""
    return save_committee([fitted_tiny(seed=s) for s in (0, 1, 2)], tmp_path_factory.mktemp("md") / "model.pt")


def test_round_trip_and_format(committee_file, tmp_path):
    c = load(committee_file)
    assert isinstance(c, Committee) and c.size == 3 and c.elements == ELEMENTS and c.dtype == torch.float64
    assert all(m.descriptor is c.descriptor for m in c.members)  # one descriptor, shared
    info = read_info(committee_file)
    assert info["format_version"] == 2 and len(info["committee"]) == 3 and info["committee"][1]["head"]["class"] == "HDNNP"
    atoms = random_cell(["Cu", "S"] * 4, seed=3)
    ref = [m.predict(atoms, stress=True) for m in members()]
    out = c.predict(atoms, stress=True)
    for key in ("energy", "atomic_energies", "forces", "stress"):
        want = torch.stack([r[key] for r in ref])
        torch.testing.assert_close(out["members"][key], want, rtol=0, atol=1e-12)
        torch.testing.assert_close(out[key], want.mean(0), rtol=0, atol=1e-12)
    # the members' pair gradients by K backward passes (the path when the batched one is not possible) agree
    c._batched = False
    loop = c.predict(atoms, stress=True)
    for key in ("forces", "stress"):
        torch.testing.assert_close(loop["members"][key], out["members"][key], rtol=0, atol=1e-12)
    # a single model is still written and read as format 1, as a Potential
    single = save(members(1)[0], tmp_path / "single.pt")
    assert read_info(single)["format_version"] == 1 and not isinstance(load(single), Committee)
    # saving a loaded committee again keeps it
    again = load(save(c, tmp_path / "again.pt"))
    torch.testing.assert_close(again.predict(atoms)["forces"], out["forces"], rtol=0, atol=1e-12)


def test_calculator_mean_and_spread_match_numpy(committee_file):
    atoms = random_cell(["Cu", "S"] * 5, seed=1)
    per = []
    for m in members():
        a = atoms.copy()
        a.calc = MLPotCalculator(m)
        per.append((a.get_potential_energy(), a.get_potential_energies(), a.get_forces(), a.get_stress()))
        assert "forces_std" not in a.calc.results and "energy_std" not in a.calc.results  # one model: no spread
    atoms.calc = calc = MLPotCalculator(committee_file)
    E, Ei, F, S = (np.array([p[k] for p in per]) for k in range(4))
    assert atoms.get_potential_energy() == pytest.approx(E.mean(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energies(), Ei.mean(0), atol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), F.mean(0), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), S.mean(0), atol=1e-10)
    r = calc.results
    assert r["energy_std"] == pytest.approx(E.std(), abs=1e-10) and r["energy_std"] > 0
    np.testing.assert_allclose(r["energies_std"], Ei.std(0), atol=1e-10)
    fstd = np.linalg.norm(F.std(0), axis=1)  # per atom: the norm of the per-component std
    assert r["forces_std"].shape == (len(atoms),)
    np.testing.assert_allclose(r["forces_std"], fstd, atol=1e-10)
    assert r["max_force_std"] == pytest.approx(fstd.max()) and r["mean_force_std"] == pytest.approx(fstd.mean())
    np.testing.assert_allclose(calc.get_property("forces_std", atoms), fstd, atol=1e-10)  # an ASE property of this calculator
    # float32 evaluation of the same committee: the same numbers to float32 precision
    a32 = atoms.copy()
    a32.calc = MLPotCalculator(committee_file, dtype="float32")
    a32.get_forces()
    np.testing.assert_allclose(a32.calc.results["forces_std"], fstd, atol=1e-4)


def test_deployed_committee_is_the_mean(committee_file, tmp_path):
    from mlpot.deploy import _inputs, deploy, energies_and_pair_gradients, load_deployed
    from mlpot.models.potential import forces_and_virial

    path = deploy(committee_file, tmp_path / "c.lammps.pt")
    module, meta = load_deployed(path)
    assert meta["head"] == "Committee(HDNNP x3)"
    atoms = random_cell(["Cu", "S"] * 5, seed=4)
    c = load(committee_file)
    vec, species, edge_index = _inputs(c, atoms, torch.float64)
    e, grad = energies_and_pair_gradients(module, vec, species, edge_index, meta=meta)
    f, _ = forces_and_virial(grad, vec, edge_index, len(atoms), None, 1, virial=False)
    atoms.calc = MLPotCalculator(committee_file)
    np.testing.assert_allclose(e.numpy(), atoms.get_potential_energies(), atol=1e-10)
    np.testing.assert_allclose(f.numpy(), atoms.get_forces(), atol=1e-10)


def read_thermo(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_md_thermo_spread_columns_and_collect(md_committee, tmp_path):
    atoms = cu()
    atoms.rattle(0.02, seed=1)
    s = run_md(atoms, MLPotCalculator(md_committee), output_dir=tmp_path, ensemble="nve", steps=6, interval=2,
               temperature_K=300, progress=False, collect={"lower": 0.0, "interval": 3})
    rows = read_thermo(tmp_path / "thermo.csv")
    assert len(rows) == 4
    for row in rows:
        assert float(row["max_force_std_eV_A"]) >= float(row["mean_force_std_eV_A"]) > 0
        assert float(row["energy_std_eV"]) > 0
    import ase.io

    frames = ase.io.read(tmp_path / "uncertain.extxyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 3, 6] and s["n_collected"] == 3
    assert frames[0].arrays["forces_std"].shape == (32,) and frames[0].info["max_force_std"] > 0
    # a single model: the columns stay empty
    run_md(cu(), MLPotCalculator(fitted_tiny()), output_dir=tmp_path / "single", steps=2, interval=2, progress=False)
    assert read_thermo(tmp_path / "single" / "thermo.csv")[0]["max_force_std_eV_A"] == ""


def test_md_stops_on_force_spread_with_one_line(md_committee, tmp_path):
    from mlpot.md.app import run

    with pytest.raises(ExtrapolationError) as e:
        run(compose_md(f"output_dir={tmp_path}", "md/calculator=model", f"calculator.path={md_committee}",
                       "stop.max_force_std=1e-6"))
    msg = str(e.value)
    assert "\n" not in msg and re.match(r"MD step \d+: committee force spread", msg) and "stop.max_force_std=1e-06" in msg
    assert (tmp_path / "md.last_good.extxyz").is_file()
    # the threshold without a committee: one line saying what is missing
    with pytest.raises(SimulationConfigError, match="stop.max_force_std needs a committee model"):
        run_md(cu(), MLPotCalculator(fitted_tiny()), output_dir=tmp_path / "s", steps=2, progress=False,
               max_force_std=0.1)
    with pytest.raises(SimulationConfigError, match=r"collect\.upper \(0\.1\) must be above collect\.lower"):
        run_md(cu(), MLPotCalculator(md_committee), output_dir=tmp_path / "c", steps=2, progress=False,
               collect={"lower": 0.2, "upper": 0.1})


def test_members_with_other_elements_are_one_line_naming_the_file(tmp_path, capsys):
    from mlpot.committee_app import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = save(random_potential(ELEMENTS, seed=0), tmp_path / "a" / "model.pt")
    b = save(random_potential(["Cu"], seed=1), tmp_path / "b" / "model.pt")
    with pytest.raises(CommitteeError, match=r"b/model\.pt: elements \['Cu'\] differ from .*a/model\.pt's \['Cu', 'S'\]"):
        save_committee([a, b], tmp_path / "c.pt")
    with pytest.raises(SystemExit) as e:
        main([f"members=[{a},{tmp_path / 'b'}]", f"out={tmp_path / 'c.pt'}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("mlpot-committee: error: ") and "b/model.pt: elements ['Cu']" in err[0] and len(err) == 2
    # another descriptor (cutoff) is refused as well, naming the member
    c = save(random_potential(ELEMENTS, seed=2, cutoff=4.0), tmp_path / "c_cut.pt")
    with pytest.raises(CommitteeError, match=r"c_cut\.pt: cutoff 4\.0 Å differs"):
        save_committee([a, c], tmp_path / "c.pt")
    # a damaged committee file: the file and the member are named
    data = torch.load(save_committee([a, a], tmp_path / "ok.pt"), weights_only=True)
    data["committee"][1]["head"] = {"class": "Nope"}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"bad\.pt, committee member 1: unknown head class 'Nope'"):
        load(tmp_path / "bad.pt")


def test_combine_a_multirun_folder(tmp_path, capsys):
    from mlpot.committee_app import main

    for k in range(3):
        (tmp_path / "multi" / str(k)).mkdir(parents=True)
        save(random_potential(ELEMENTS, seed=k), tmp_path / "multi" / str(k) / "model.pt")
    assert main([f"members={tmp_path / 'multi'}", f"out={tmp_path / 'c.pt'}"]) == 0
    info = read_info(tmp_path / "c.pt")
    assert [m.endswith(f"multi/{k}/model.pt") for k, m in enumerate(info["extra"]["members"])] == [True] * 3


def test_train_committee_in_one_command(tiny_data, tmp_path):
    import json

    from mlpot.train import run_committee
    from tests.helpers import train_config

    metrics = run_committee(train_config(tmp_path, tiny_data, "committee.size=2", "trainer.max_epochs=1"))
    c = load(tmp_path / "model.pt")
    assert isinstance(c, Committee) and c.size == 2
    m0, m1 = (read_info(tmp_path / "members" / str(k) / "model.pt")["extra"]["config"] for k in (0, 1))
    assert (m0["seed"], m1["seed"]) == (0, 1) and m0["data"]["split"]["seed"] == m1["data"]["split"]["seed"] == 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["committee/size"] == 2 and len(saved["members"]) == 2
    assert metrics["test/mean_force_std"] > 0 and -1 <= metrics["test/force_std_spearman"] <= 1


def test_evaluate_app_runs_a_committee(md_committee, tmp_path):
    """mlpot-evaluate takes a committee model.pt like one model (its mean)."""
    import json

    from mlpot.evaluate.app import run
    from tests.helpers import tiny_evaluate_config

    cfg = tiny_evaluate_config(md_committee, tmp_path, liquid_steps=20, frame_interval=10)
    run(cfg)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["a0"]["value"] is not None and saved["B"]["unit"] == "GPa"


def test_init_from_a_committee_is_one_line(committee_file):
    from mlpot.errors import CheckpointError
    from mlpot.training.checkpoints import init_from_model

    with pytest.raises(CheckpointError, match=r"init_from: a committee of 3 models; fine-tune one member"):
        init_from_model(committee_file, ["Cu"])
