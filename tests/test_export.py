"""Export/import of potentials (mlpot.export): exact round trip, fresh process, calculator, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

import mlpot
from mlpot.calculator import MLPotCalculator
from mlpot.descriptors import FeatureScaler, build_acsf
from mlpot.errors import ModelFileError
from mlpot.export import (
    FORMAT_VERSION,
    HEADS,
    ModelFormatError,
    load,
    read_info,
    register_head,
    save,
)
from mlpot.models import HDNNP, Potential

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ELEMENTS = ["Cu", "S"]


def small_potential(seed=0, mode="minmax_center") -> Potential:
    torch.manual_seed(seed)
    d = build_acsf(ELEMENTS, cutoff=4.0, radial={"eta": [0.5, 1.0]},
                   angular={"type": 9, "eta": [0.1], "zeta": [1, 2], "lambda": [1, -1]})
    scaler = FeatureScaler(len(ELEMENTS), d.n_features, mode, smin=-1.0, smax=1.0)
    head = HDNNP(d.n_features_per_element, (8, 8), "tanh", e0=[-1.0, -2.0], energy_scale=[0.7, 1.3])
    pot = Potential(ELEMENTS, d, head, scaler, metadata={"note": "test", "seed": seed}).double()
    g = torch.Generator().manual_seed(seed + 1)
    shape = pot.scaler.a.shape
    gmin = torch.rand(shape, generator=g, dtype=torch.float64)
    gmax = gmin + 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
    gmax[0, 1] = gmin[0, 1]  # a constant component (a = 0, as n2p2)
    gmean = 0.5 * (gmin + gmax)
    gsigma = 0.1 + torch.rand(shape, generator=g, dtype=torch.float64)
    pot.scaler.set_stats(gmin, gmax, gmean, gsigma)
    return pot


def structures():
    rng = np.random.default_rng(7)
    out = []
    for n, a in ((5, 3.6), (7, 4.1)):
        cell = np.eye(3) * a + rng.uniform(-0.3, 0.3, (3, 3))
        symbols = [ELEMENTS[k] for k in rng.integers(0, 2, n)]
        atoms = Atoms(symbols, scaled_positions=rng.uniform(0, 1, (n, 3)), cell=cell, pbc=True)
        atoms.positions += rng.normal(0, 0.05, (n, 3))
        out.append(atoms)
    return out


def predictions(pot, atoms_list):
    return [pot.predict(a, forces=True, stress=True) for a in atoms_list]


def assert_same(p1, p2, atol=1e-10):
    for a, b in zip(p1, p2):
        for key in ("energy", "atomic_energies", "forces", "stress"):
            assert a[key].dtype == b[key].dtype
            torch.testing.assert_close(a[key], b[key], rtol=0.0, atol=atol, msg=key)


@pytest.fixture(scope="module")
def pot():
    return small_potential()


@pytest.fixture(scope="module")
def saved(pot, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.pt"
    save(pot, path, extra={"training": {"epochs": 3, "lr": 1e-3}, "metrics": {"rmse_e": 0.01}})
    return path


def _walk_plain(obj):
    if isinstance(obj, dict):
        assert type(obj) is dict
        for k, v in obj.items():
            assert type(k) in (str, int, float, bool)
            _walk_plain(v)
    elif isinstance(obj, list):
        assert type(obj) is list
        for v in obj:
            _walk_plain(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool, torch.Tensor), type(obj)


def test_file_is_plain_data(pot, saved):
    raw = torch.load(saved, weights_only=True)
    _walk_plain(raw)
    # single models are still written as format 1 (format 2, the newest this mlpot reads, is a committee)
    assert raw["format"] == "mlpot-model" and raw["format_version"] == 1 and FORMAT_VERSION == 2
    assert raw["mlpot_version"] == mlpot.__version__
    assert raw["elements"] == ELEMENTS and raw["cutoff"] == 4.0 and raw["dtype"] == "float64"
    assert raw["units"] == {"energy": "eV", "length": "Å"}
    assert raw["descriptor"]["class"] == "ACSF" and raw["descriptor"]["config"] == pot.descriptor.config()
    assert raw["head"]["class"] == "HDNNP"
    assert raw["head"]["config"] == {"n_features_per_element": pot.descriptor.n_features_per_element,
                                     "hidden": [8, 8], "activation": "tanh"}
    assert {"e0", "energy_scale"} <= set(raw["head"]["state"])
    assert raw["scaler"]["config"]["mode"] == "minmax_center"
    for name in ("a", "b", "gmin", "gmax", "gmean", "gsigma"):
        assert torch.equal(raw["scaler"]["state"][name], getattr(pot.scaler, name))
    assert raw["metadata"] == {"note": "test", "seed": 0}
    info = read_info(saved)
    assert info["extra"] == {"training": {"epochs": 3, "lr": 1e-3}, "metrics": {"rmse_e": 0.01}}
    assert "state" not in info["head"] and info["head"]["config"] == raw["head"]["config"]


def test_round_trip_float64(pot, saved):
    loaded = load(saved)
    assert isinstance(loaded, Potential) and loaded.dtype == torch.float64
    assert loaded.elements == ELEMENTS and loaded.cutoff == pot.cutoff and loaded.metadata == pot.metadata
    for (k1, v1), (k2, v2) in zip(pot.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and v1.dtype == v2.dtype and torch.equal(v1, v2), k1
    atoms = structures()
    assert_same(predictions(pot, atoms), predictions(loaded, atoms))
    # gradients still flow (the loaded model can be fine-tuned)
    assert all(p.requires_grad for p in loaded.parameters())


def test_directory_path_and_mlpot_namespace(pot, tmp_path):
    written = mlpot.save(pot, tmp_path)
    assert written == tmp_path / "model.pt" and written.is_file()
    assert_same(predictions(pot, structures()[:1]), predictions(mlpot.load(tmp_path), structures()[:1]))


def test_round_trip_float32(tmp_path):
    pot32 = small_potential(seed=3, mode="sigma").float()
    path = save(pot32, tmp_path / "model32.pt")
    assert torch.load(path, weights_only=True)["dtype"] == "float32"
    loaded = load(path)
    assert loaded.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in loaded.state_dict().values())
    atoms = structures()
    assert_same(predictions(pot32, atoms), predictions(loaded, atoms), atol=1e-6)


def test_calculator_accepts_path(pot, saved):
    atoms = structures()[1]
    ref = pot.predict(atoms, forces=True, stress=True)
    for p in (saved, str(saved)):
        a = atoms.copy()
        a.calc = MLPotCalculator(p, dtype="float64")
        assert abs(a.get_potential_energy() - float(ref["energy"].sum())) < 1e-10
        np.testing.assert_allclose(a.get_forces(), ref["forces"].numpy(), rtol=0, atol=1e-10)
        s = ref["stress"][0].numpy()
        np.testing.assert_allclose(a.get_stress(), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]],
                                   rtol=0, atol=1e-10)


def test_fresh_process(pot, saved, tmp_path):
    atoms = structures()
    xyz = tmp_path / "structures.json"  # exact floats (extxyz rounds positions)
    xyz.write_text(json.dumps([{"symbols": a.get_chemical_symbols(), "positions": a.positions.tolist(),
                                "cell": a.cell.array.tolist(), "pbc": a.pbc.tolist()} for a in atoms]))
    script = textwrap.dedent(
        """
        import json, sys
        from ase import Atoms
        import mlpot
        pot = mlpot.load(sys.argv[1])
        out = []
        for s in json.load(open(sys.argv[2])):
            atoms = Atoms(s["symbols"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
            p = pot.predict(atoms, forces=True, stress=True)
            out.append({k: p[k].tolist() for k in ("energy", "atomic_energies", "forces", "stress")})
        assert not any(m == "tests" or m.startswith("tests.") for m in sys.modules), "test helpers imported"
        print(json.dumps({"dtype": str(pot.dtype), "results": out}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", script, str(saved), str(xyz)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["dtype"] == "torch.float64"
    for ref, res in zip(predictions(pot, atoms), got["results"]):
        for key, val in res.items():
            np.testing.assert_allclose(np.asarray(val), ref[key].numpy(), rtol=0, atol=1e-10, err_msg=key)


def test_custom_head_plugs_in(tmp_path):
    class DoubledHDNNP(HDNNP):
        def forward(self, x, species):
            return 2.0 * super().forward(x, species)

    base = small_potential(seed=5)
    pot = Potential(base.elements, base.descriptor, DoubledHDNNP(**base.head.config()), base.scaler).double()
    with pytest.raises(TypeError, match="register"):
        save(pot, tmp_path / "m.pt")
    register_head("TestDoubledHDNNP", DoubledHDNNP)
    try:
        loaded = load(save(pot, tmp_path / "m.pt"))
        assert type(loaded.head) is DoubledHDNNP
        assert_same(predictions(pot, structures()), predictions(loaded, structures()))
    finally:
        HEADS.pop("TestDoubledHDNNP")
    with pytest.raises(ModelFormatError, match="unknown head class 'TestDoubledHDNNP'"):
        load(tmp_path / "m.pt")


# -- errors ---------------------------------------------------------------------------------------
def _check(excinfo, path, text):
    msg = str(excinfo.value)
    assert str(path) in msg and text in msg and "\n" not in msg, msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "model.pt"
    with pytest.raises(ModelFileError) as e:
        load(path)
    assert isinstance(e.value, FileNotFoundError)
    _check(e, path, "not found")
    with pytest.raises(ModelFileError):
        MLPotCalculator(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError) as e:
        load(path)
    assert not isinstance(e.value, ModelFormatError)
    _check(e, path, "not an mlpot model file")


def test_empty_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError) as e:
        load(path)
    _check(e, path, "not an mlpot model file")


def test_plain_torch_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ModelFileError) as e:
        load(path)
    _check(e, path, "not an mlpot model file")


def test_pickled_module_is_refused(pot, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(pot, path)  # a whole nn.Module: weights_only refuses it, nothing from the file runs
    with pytest.raises(ModelFileError) as e:
        load(path)
    _check(e, path, "not an mlpot model file")


def _rewrite(saved, path, **changes):
    raw = torch.load(saved, weights_only=True)
    for key, value in changes.items():
        if "." in key:
            part, sub = key.split(".")
            raw[part][sub] = value
        else:
            raw[key] = value
    torch.save(raw, path)
    return path


def test_newer_format(saved, tmp_path):
    path = _rewrite(saved, tmp_path / "model.pt", format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFormatError) as e:
        load(path)
    assert isinstance(e.value, ModelFileError)
    _check(e, path, f"written by a newer mlpot (format {FORMAT_VERSION + 1} > {FORMAT_VERSION}); upgrade mlpot")


@pytest.mark.parametrize("part", ["descriptor", "head"])
def test_unknown_class(saved, tmp_path, part):
    path = _rewrite(saved, tmp_path / "model.pt", **{f"{part}.class": "Chebyshev9000"})
    with pytest.raises(ModelFormatError) as e:
        load(path)
    _check(e, path, f"unknown {part} class 'Chebyshev9000'")


def test_wrong_format_key_and_malformed(saved, tmp_path):
    path = _rewrite(saved, tmp_path / "a.pt", format="something-else")
    with pytest.raises(ModelFileError) as e:
        load(path)
    _check(e, path, "not an mlpot model file")
    raw = torch.load(saved, weights_only=True)
    del raw["head"]["state"]["e0"]
    torch.save(raw, tmp_path / "b.pt")
    with pytest.raises(ModelFileError) as e:
        load(tmp_path / "b.pt")
    _check(e, tmp_path / "b.pt", "malformed mlpot model file")


# -- n2p2 import --------------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "n2p2_cu2s").is_dir(), reason="../shared/data/n2p2_cu2s not available")
def test_n2p2_potential_round_trip(tmp_path):
    from mlpot.io import n2p2

    pot = n2p2.load(SHARED / "n2p2_cu2s")
    frames = n2p2.read_input_data(SHARED / "n2p2_cu2s" / "input.data")[:2]
    loaded = load(save(pot, tmp_path / "model.pt"))
    assert loaded.metadata == pot.metadata and loaded.head.config() == pot.head.config()
    for frame in frames:
        stress = bool(frame.pbc.all())
        a, b = pot.predict(frame, stress=stress), loaded.predict(frame, stress=stress)
        for key in ("energy", "atomic_energies", "forces", *(("stress",) if stress else ())):
            torch.testing.assert_close(a[key], b[key], rtol=0.0, atol=1e-10, msg=key)
