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

TINY = {"n_frames_per_traj": 4, "repeat": 2, "equil_steps": 4, "heat_steps": 12, "melt_equil_steps": 4,
        "n_strained": 3, "n_frames_strained": 4, "strain_repeat": 1, "strain_equil_steps": 2,
        "n_frames_surface": 4, "slab_size": 2, "slab_layers": 4, "n_frames_vacancy": 4}
# bulk MD, melt, strained cells, slabs (3 facets x 2 temperatures), vacancy (2 temperatures)
N_TRAJ = len(builtin.TEMPERATURES_K) + 1 + TINY["n_strained"] + 6 + 2
CONFIG_TYPES = (["md_300K", "md_500K", "md_700K", "md_900K", "melt_1400K"] + ["strained"] * 3
                + ["surface_100"] * 2 + ["surface_110"] * 2 + ["surface_111"] * 2 + ["vacancy"] * 2)
TEMPERATURES = [300, 500, 700, 900, 1400, 100, 300, 600, 300, 600, 300, 600, 300, 600, 300, 700]
# no strained cells, slabs or vacancy: the pre-v2 set
BULK_ONLY = {"n_strained": 0, "n_frames_surface": 0, "n_frames_vacancy": 0}
N_BULK = len(builtin.TEMPERATURES_K) + 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate_emt_cu(tmp_path_factory.mktemp("builtin") / "emt_cu.extxyz", **TINY)


@pytest.fixture(scope="module")
def tiny_frames(tiny):
    return read_frames(tiny)


def test_default_location():
    """Under the working directory's outputs/ (like runs and stores), never inside the installed package."""
    assert builtin.DEFAULT_PATH == Path("outputs") / "builtin" / "emt_cu.extxyz"
    assert not builtin.DEFAULT_PATH.is_absolute()
    assert builtin.sidecar_path(builtin.DEFAULT_PATH).name == "emt_cu.json"


def test_bit_for_bit_deterministic(tiny, tmp_path):
    again = generate_emt_cu(tmp_path / "a" / "emt_cu.extxyz", **TINY)
    parallel = generate_emt_cu(tmp_path / "b" / "emt_cu.extxyz", workers=2, **TINY)
    assert again.read_bytes() == tiny.read_bytes()
    assert parallel.read_bytes() == tiny.read_bytes()
    other_seed = generate_emt_cu(tmp_path / "c" / "emt_cu.extxyz", seed=1, **TINY)
    assert other_seed.read_bytes() != tiny.read_bytes()


def _n_atoms(config_type: str) -> int:
    if config_type == "strained":
        return 4 * TINY["strain_repeat"] ** 3
    if config_type.startswith("surface_"):
        return TINY["slab_size"] ** 2 * TINY["slab_layers"]
    return 4 * TINY["repeat"] ** 3 - (config_type == "vacancy")


def test_round_trip_labels(tiny_frames):
    assert len(tiny_frames) == N_TRAJ * 4  # every TINY frames-per-trajectory knob is 4
    for atoms in tiny_frames:
        n_atoms = _n_atoms(atoms.info["config_type"])
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
    frames = generate_frames(n_frames_per_traj=2, repeat=1, equil_steps=2, heat_steps=2, melt_equil_steps=2,
                             n_strained=2, n_frames_strained=1, strain_repeat=1, n_frames_surface=1, slab_size=1,
                             slab_layers=3, n_frames_vacancy=1)
    assert len(frames) == 5 * 2 + 2 + 6 + 2
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
        assert infos[0]["temperature_K"] == TEMPERATURES[tid]
    melt = tiny_frames[by_traj[4][0]]
    crystal = tiny_frames[0]
    np.testing.assert_allclose(crystal.cell.lengths(), TINY["repeat"] * builtin.LATTICE_CONSTANT)
    np.testing.assert_allclose(melt.cell.lengths(), TINY["repeat"] * builtin.MELT_LATTICE_CONSTANT)


def test_strained_cells(tiny_frames):
    """Each strained trajectory has its own cell (I + e) x the fcc cell; volumes span +-3 % linear strain."""
    a, n = builtin.LATTICE_CONSTANT * TINY["strain_repeat"], TINY["n_strained"]
    cells = {}
    for atoms in tiny_frames:
        if atoms.info["config_type"] == "strained":
            cells.setdefault(atoms.info["trajectory"], atoms.cell.array)
            np.testing.assert_allclose(atoms.cell.array, cells[atoms.info["trajectory"]])
    assert len(cells) == n
    strains = [cell / a - np.eye(3) for cell in cells.values()]
    for k, e in enumerate(strains):
        np.testing.assert_allclose(e, e.T, atol=1e-9)
        off = e - np.diag(np.diag(e))
        if k % 2:  # random normal and shear strains on top of the volumetric one
            assert 0 < np.abs(off).max() <= builtin.STRAIN_RANDOM
        else:  # purely volumetric
            assert np.abs(off).max() == 0 and np.ptp(np.diag(e)) < 1e-12
    grid = np.linspace(-builtin.STRAIN_VOLUMETRIC, builtin.STRAIN_VOLUMETRIC, n)
    for e in strains[::2]:  # the volumetric strains are points of the even grid, each used once
        assert np.abs(grid - e[0, 0]).min() < 1e-9
    assert len({round(e[0, 0], 9) for e in strains[::2]}) == len(strains[::2])


def test_surface_slabs(tiny_frames):
    """Slabs have vacuum wider than the cutoff along z, the facet's in-plane cell, and relax outwards/inwards."""
    from ase.build import fcc100, fcc110, fcc111

    builders = {"100": fcc100, "110": fcc110, "111": fcc111}
    seen = set()
    for atoms in tiny_frames:
        ct = atoms.info["config_type"]
        if not ct.startswith("surface_"):
            continue
        m = ct.split("_")[1]
        seen.add(m)
        ref = builders[m]("Cu", size=(TINY["slab_size"], TINY["slab_size"], TINY["slab_layers"]),
                          a=builtin.LATTICE_CONSTANT, vacuum=builtin.SURFACE_VACUUM, periodic=True)
        np.testing.assert_allclose(atoms.cell.array, ref.cell.array, atol=1e-9)
        z = atoms.positions[:, 2]
        assert z.min() > 0.5 * builtin.SURFACE_VACUUM and atoms.cell[2, 2] - z.max() > 0.5 * builtin.SURFACE_VACUUM
        assert atoms.cell[2, 2] - (z.max() - z.min()) > 5.0  # vacuum gap wider than the default 5 Å cutoff
        # surface atoms are less bound than bulk ones: the top and bottom layers' atomic energies are higher
        e = get_label(atoms, "atomic_energies")
        outer = (z < z.min() + 0.5) | (z > z.max() - 0.5)
        assert e[outer].mean() > e[~outer].mean() + 0.1
    assert seen == set(builtin.SURFACES)


def test_vacancy_supercell(tiny_frames):
    n_site = 4 * TINY["repeat"] ** 3
    vac = [a for a in tiny_frames if a.info["config_type"] == "vacancy"]
    assert len(vac) == 2 * TINY["n_frames_vacancy"]
    for atoms in vac:
        assert len(atoms) == n_site - 1
        np.testing.assert_allclose(atoms.cell.lengths(), TINY["repeat"] * builtin.LATTICE_CONSTANT)
        # the empty site (the origin, atom 0 of the perfect crystal) stays empty
        probe = atoms.copy()
        probe.append("Cu")
        probe.positions[-1] = 0.0
        dist = probe.get_distances(len(probe) - 1, range(len(probe) - 1), mic=True)
        assert dist.min() > 1.5, dist.min()


def test_new_types_switch_off():
    """n_strained=0, n_frames_surface=0, n_frames_vacancy=0 give the bulk and melt trajectories only."""
    frames = generate_frames(n_frames_per_traj=1, repeat=1, equil_steps=1, heat_steps=1, melt_equil_steps=1,
                             **BULK_ONLY)
    assert [a.info["config_type"] for a in frames] == CONFIG_TYPES[:5]


def test_config_type_split_of_builtin_data(tiny_frames):
    split = split_frames(tiny_frames, kind="config_type", val_types=["vacancy"], test_types=["surface_*"])
    assert {tiny_frames[k].info["config_type"] for k in split["val"]} == {"vacancy"}
    assert {tiny_frames[k].info["config_type"] for k in split["test"]} == {"surface_100", "surface_110", "surface_111"}
    assert "strained" in {tiny_frames[k].info["config_type"] for k in split["train"]}


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
    knobs = dict(TINY, n_frames_per_traj=2, **BULK_ONLY)
    assert generate_emt_cu(path, **knobs) == path
    meta = json.loads(builtin.sidecar_path(path).read_text())
    assert meta["format_version"] == builtin.FORMAT_VERSION
    assert meta["parameters"]["n_frames_per_traj"] == 2 and meta["n_frames"] == 2 * N_BULK
    first = _stamp(path)

    generate_emt_cu(path, **knobs)  # cached: not rewritten
    assert _stamp(path) == first

    generate_emt_cu(path, force=True, **knobs)
    second = _stamp(path)
    assert second != first

    generate_emt_cu(path, **dict(knobs, n_frames_per_traj=3))  # other parameters: regenerated
    assert _stamp(path) != second
    assert len(read_frames(path)) == 3 * N_BULK

    third = _stamp(path)
    with open(path, "a") as f:  # damaged file: hash mismatch, regenerated
        f.write("\n")
    generate_emt_cu(path, **dict(knobs, n_frames_per_traj=3))
    assert _stamp(path) != third and len(read_frames(path)) == 3 * N_BULK

    builtin.sidecar_path(path).write_text("not json")  # damaged sidecar: regenerated
    fourth = _stamp(path)
    generate_emt_cu(path, **dict(knobs, n_frames_per_traj=3))
    assert _stamp(path) != fourth


def test_bad_size_knob(tmp_path):
    with pytest.raises(ValueError, match="n_frames_per_traj"):
        generate_emt_cu(tmp_path / "x.extxyz", n_frames_per_traj=0)
    with pytest.raises(ValueError, match="slab_layers"):
        generate_emt_cu(tmp_path / "x.extxyz", slab_layers=1)
    with pytest.raises(TypeError, match="n_frames"):
        generate_emt_cu(tmp_path / "x.extxyz", n_frames=3)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli" / "cu.extxyz"
    args = ["--out", str(out), "--n-frames-per-traj", "2", "--repeat", "1", "--equil-steps", "2",
            "--heat-steps", "2", "--melt-equil-steps", "2", "--workers", "1", "--n-strained", "1",
            "--n-frames-strained", "1", "--strain-repeat", "1", "--n-frames-surface", "1", "--slab-size", "1",
            "--slab-layers", "3", "--n-frames-vacancy", "1"]
    assert builtin.main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{out} {2 * N_BULK + 1 + 6 + 2} frames"
    assert (tmp_path / "cli" / "cu.json").is_file()


@pytest.mark.slow
def test_default_set_crystal_and_liquid(tmp_path):
    """Full size (about a minute): the crystals, strained cells, slabs and vacancy cell stay solid, the
    1400 K melt diffuses."""
    frames = read_frames(generate_emt_cu(tmp_path / "emt_cu.extxyz", workers=2))
    by_traj = defaultdict(list)
    for atoms in frames:
        by_traj[atoms.info["trajectory"]].append(atoms)
    counts = defaultdict(int)
    for atoms in frames:
        counts[atoms.info["config_type"]] += 1
    assert counts == {**{t: builtin.N_FRAMES_PER_TRAJ for t in CONFIG_TYPES[:5]},
                      "strained": builtin.N_STRAINED * builtin.N_FRAMES_STRAINED,
                      **{f"surface_{m}": 2 * builtin.N_FRAMES_SURFACE for m in builtin.SURFACES},
                      "vacancy": 2 * builtin.N_FRAMES_VACANCY}
    for traj in by_traj.values():
        name = traj[0].info["config_type"]
        lengths = traj[0].cell.lengths()
        pos = np.array([a.positions for a in traj])
        d = np.diff(pos, axis=0)
        d -= np.round(d / lengths) * lengths
        msd = (np.cumsum(d, axis=0)[-1] ** 2).sum(-1).mean()
        if name.startswith("melt"):
            assert msd > 1.0, (name, msd)
        else:
            assert msd < 0.3, (name, msd)
