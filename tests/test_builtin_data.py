"""The built-in EMT Cu data set: determinism, labels, caching, CLI (tiny sizes)."""

from __future__ import annotations

import json
import numbers
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlpot.data import builtin, read_frames
from mlpot.data.builtin import generate_emt_cu, generate_frames
from mlpot.data.frames import get_label
from mlpot.data.splits import split_frames

TINY = {"n_frames_per_traj": 4, "repeat": 2, "equil_steps": 4, "heat_steps": 12, "melt_equil_steps": 4}
N_TRAJ = len(builtin.TEMPERATURES_K) + 1
CONFIG_TYPES = ["md_300K", "md_500K", "md_700K", "md_900K", "melt_1400K"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_emt_cu(tmp_path_factory.mktemp("builtin") / "emt_cu.extxyz", **TINY)


@pytest.fixture(scope="module")
def tiny_frames(tiny):
    return read_frames(tiny)


def test_default_location():
    root = Path(builtin.__file__).resolve().parents[2]
    assert builtin.DEFAULT_PATH == root / "outputs" / "builtin" / "emt_cu.extxyz"
    assert builtin.sidecar_path(builtin.DEFAULT_PATH).name == "emt_cu.json"


def test_bit_for_bit_deterministic(tiny, tmp_path):
    again = generate_emt_cu(tmp_path / "a" / "emt_cu.extxyz", **TINY)
    parallel = generate_emt_cu(tmp_path / "b" / "emt_cu.extxyz", workers=2, **TINY)
    assert again.read_bytes() == tiny.read_bytes()
    assert parallel.read_bytes() == tiny.read_bytes()
    other_seed = generate_emt_cu(tmp_path / "c" / "emt_cu.extxyz", seed=1, **TINY)
    assert other_seed.read_bytes() != tiny.read_bytes()


def test_round_trip_labels(tiny_frames):
    n_atoms = 4 * TINY["repeat"] ** 3
    assert len(tiny_frames) == N_TRAJ * TINY["n_frames_per_traj"]
    for atoms in tiny_frames:
        assert len(atoms) == n_atoms and set(atoms.get_chemical_symbols()) == {"Cu"}
        energy = get_label(atoms, "energy")
        forces = get_label(atoms, "forces")
        stress = get_label(atoms, "stress")
        atomic = get_label(atoms, "atomic_energies")
        assert isinstance(energy, float)
        assert forces.shape == (n_atoms, 3) and stress.shape == (3, 3) and atomic.shape == (n_atoms,)
        np.testing.assert_allclose(stress, stress.T)
        # extxyz keeps 8 decimals per atomic energy: the sum is exact to ~n * 5e-9
        assert abs(atomic.sum() - energy) < n_atoms * 5e-9
        # positions are wrapped into the cell
        frac = atoms.cell.scaled_positions(atoms.positions)
        assert np.all(frac >= -1e-9) and np.all(frac < 1 + 1e-9)


def test_in_memory_atomic_energies_sum_to_energy():
    frames = generate_frames(n_frames_per_traj=2, repeat=1, equil_steps=2, heat_steps=2, melt_equil_steps=2)
    for atoms in frames:
        r = atoms.calc.results
        assert abs(r["energies"].sum() - r["energy"]) < 1e-8
        assert r["stress"].shape == (6,)


def test_labels_match_fresh_emt(tiny_frames):
    for atoms in tiny_frames[:: max(1, len(tiny_frames) // 8)]:
        fresh = atoms.copy()
        fresh.calc = EMT()
        np.testing.assert_allclose(fresh.get_forces(), get_label(atoms, "forces"), rtol=0, atol=1e-7)
        assert abs(fresh.get_potential_energy() - get_label(atoms, "energy")) < 1e-8
        np.testing.assert_allclose(fresh.get_stress(voigt=False), get_label(atoms, "stress"), rtol=0, atol=1e-9)
        np.testing.assert_allclose(fresh.get_potential_energies(), get_label(atoms, "atomic_energies"), atol=1e-8)


def test_info_and_time_order(tiny_frames):
    by_traj = defaultdict(list)
    for k, atoms in enumerate(tiny_frames):
        by_traj[atoms.info["trajectory"]].append(k)
    assert sorted(by_traj) == list(range(N_TRAJ))
    interval = builtin.INTERVAL
    for tid, idx in by_traj.items():
        infos = [tiny_frames[k].info for k in idx]
        assert idx == list(range(idx[0], idx[0] + len(idx)))  # contiguous in the file, in time order
        assert {i["config_type"] for i in infos} == {CONFIG_TYPES[tid]}
        steps = [i["step"] for i in infos]
        assert all(isinstance(s, numbers.Integral) for s in steps)
        assert np.all(np.diff(steps) == interval)
        assert infos[0]["temperature_K"] == float(CONFIG_TYPES[tid].split("_")[1][:-1])
    melt = tiny_frames[by_traj[N_TRAJ - 1][0]]
    crystal = tiny_frames[0]
    np.testing.assert_allclose(crystal.cell.lengths(), TINY["repeat"] * builtin.LATTICE_CONSTANT)
    np.testing.assert_allclose(melt.cell.lengths(), TINY["repeat"] * builtin.MELT_LATTICE_CONSTANT)


def test_tail_split_of_builtin_data(tiny_frames):
    split = split_frames(tiny_frames, kind="tail", fractions=(0.5, 0.25, 0.25))
    for part in split.values():
        assert len({tiny_frames[k].info["trajectory"] for k in part}) == N_TRAJ
    last = defaultdict(int)
    for k in split["train"]:
        t = tiny_frames[k].info["trajectory"]
        last[t] = max(last[t], tiny_frames[k].info["step"])
    for k in split["val"] + split["test"]:
        assert tiny_frames[k].info["step"] > last[tiny_frames[k].info["trajectory"]]


def _stamp(path: Path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_cache_reused_and_regenerated(tmp_path):
    path = tmp_path / "emt_cu.extxyz"
    knobs = dict(TINY, n_frames_per_traj=2)
    assert generate_emt_cu(path, **knobs) == path
    meta = json.loads(builtin.sidecar_path(path).read_text())
    assert meta["format_version"] == builtin.FORMAT_VERSION
    assert meta["parameters"]["n_frames_per_traj"] == 2 and meta["n_frames"] == 2 * N_TRAJ
    first = _stamp(path)

    generate_emt_cu(path, **knobs)  # cached: not rewritten
    assert _stamp(path) == first

    generate_emt_cu(path, force=True, **knobs)
    second = _stamp(path)
    assert second != first

    generate_emt_cu(path, **dict(knobs, n_frames_per_traj=3))  # other parameters: regenerated
    assert _stamp(path) != second
    assert len(read_frames(path)) == 3 * N_TRAJ

    third = _stamp(path)
    with open(path, "a") as f:  # damaged file: hash mismatch, regenerated
        f.write("\n")
    generate_emt_cu(path, **dict(knobs, n_frames_per_traj=3))
    assert _stamp(path) != third and len(read_frames(path)) == 3 * N_TRAJ

    builtin.sidecar_path(path).write_text("not json")  # damaged sidecar: regenerated
    fourth = _stamp(path)
    generate_emt_cu(path, **dict(knobs, n_frames_per_traj=3))
    assert _stamp(path) != fourth


def test_bad_size_knob(tmp_path):
    with pytest.raises(ValueError, match="n_frames_per_traj"):
        generate_emt_cu(tmp_path / "x.extxyz", n_frames_per_traj=0)
    with pytest.raises(TypeError):
        generate_emt_cu(tmp_path / "x.extxyz", n_frames=3)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli" / "cu.extxyz"
    args = ["--out", str(out), "--n-frames-per-traj", "2", "--repeat", "1", "--equil-steps", "2",
            "--heat-steps", "2", "--melt-equil-steps", "2", "--workers", "1"]
    assert builtin.main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{out} {2 * N_TRAJ} frames"
    assert (tmp_path / "cli" / "cu.json").is_file()


@pytest.mark.slow
def test_default_set_crystal_and_liquid(tmp_path):
    """Full size (about a minute): the crystals stay fcc, the 1400 K melt diffuses."""
    frames = read_frames(generate_emt_cu(tmp_path / "emt_cu.extxyz", workers=2))
    by_traj = defaultdict(list)
    for atoms in frames:
        by_traj[atoms.info["config_type"]].append(atoms)
    assert [len(v) for v in by_traj.values()] == [builtin.N_FRAMES_PER_TRAJ] * N_TRAJ
    for name, traj in by_traj.items():
        lengths = traj[0].cell.lengths()
        pos = np.array([a.positions for a in traj])
        d = np.diff(pos, axis=0)
        d -= np.round(d / lengths) * lengths
        msd = (np.cumsum(d, axis=0)[-1] ** 2).sum(-1).mean()
        if name.startswith("melt"):
            assert msd > 1.0, (name, msd)
        else:
            assert msd < 0.3, (name, msd)
