"""PWmat MOVEMENT reader: synthetic frames written here (labels, signs, units, errors) and the shared files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk

from mlpot.data.frames import get_label, read_frames
from mlpot.data.splits import split_frames
from mlpot.errors import DataError
from mlpot.io.pwmat import MovementError, read_movement, read_movements


def frame_text(atoms, forces, e_i, d_e, time_fs, virial=None, force_header="Force (-force, eV/Angstrom)",
               end=True):
    """One MOVEMENT frame, as PWmat writes it (forces are written as −F)."""
    n = len(atoms)
    ep = float(np.sum(e_i) + d_e)
    out = [f"  {n} atoms,Iteration (fs) =    {time_fs:.10E}, Etot,Ep,Ek (eV) =   {ep + 1.0:.10E}  {ep:.10E}"
           f"   {1.0:.10E}, SCF =     6",
           "     MD_INFO: METHOD(1-VV,2-NH,3-LV,4-LVPR,5-NHRP) TIME(fs) TEMP(K)",
           "              2    0.1000000000E+01   0.59918E+03",
           " Lattice vector (Angstrom)"]
    for r in range(3):
        row = "   " + "    ".join(f"{x:.10E}" for x in atoms.cell[r])
        if virial is not None:
            row += "     stress (eV): " + " ".join(f"{x:.6E}" for x in virial[r])
        out.append(row)
    out.append(" Position (normalized), move_x, move_y, move_z")
    for z, s in zip(atoms.numbers, atoms.get_scaled_positions()):
        out.append(f"  {z:2d}  " + "  ".join(f"{x:.15f}" for x in s) + "     1  1  1")
    out.append(f" {force_header}")
    for z, f in zip(atoms.numbers, forces):
        out.append(f"  {z:2d}  " + "  ".join(f"{-x:.15f}" for x in f))
    out.append(" Velocity (bohr/fs)")
    for z in atoms.numbers:
        out.append(f"  {z:2d}  0.001 0.002 0.003")
    out.append(f"Atomic-Energy, Etot(eV),E_nonloc(eV),Q_atom:dE(eV)=  {d_e:.10E}")
    for z, e in zip(atoms.numbers, e_i):
        out.append(f"  {z:2d}   {e:.10E}   -0.1678390335E+04    0.1899889379E+02")
    if end:
        out.append(" -------------------------------------------------")
    return "\n".join(out) + "\n"


def synthetic(n_frames=3, seed=0, virial=True):
    rng = np.random.default_rng(seed)
    frames, text = [], ""
    for k in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
        atoms.numbers[1] = 14  # two species
        atoms.cell[0, 1] = 0.3  # triclinic
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        forces = rng.normal(0, 0.5, (len(atoms), 3))
        e_i = 160.0 + rng.normal(0, 0.1, len(atoms))
        w = rng.normal(0, 2.0, (3, 3)) if virial else None
        frames.append((atoms, forces, e_i, -300.0, w))
        text += frame_text(atoms, forces, e_i, -300.0, float(k + 1), virial=w)
    return frames, text


def test_synthetic_labels_units_and_signs(tmp_path):
    ref, text = synthetic(3)
    path = tmp_path / "0_300_MOVEMENT"
    path.write_text(text)
    frames = read_movement(path)
    assert len(frames) == 3
    for k, (atoms, (a0, f0, e_i, d_e, w)) in enumerate(zip(frames, ref)):
        n = len(a0)
        assert atoms.get_chemical_symbols() == a0.get_chemical_symbols()
        np.testing.assert_allclose(atoms.cell.array, a0.cell.array, atol=1e-9)
        np.testing.assert_allclose(atoms.positions, a0.get_scaled_positions() @ a0.cell.array, atol=1e-9)  # frac -> Cartesian
        np.testing.assert_allclose(get_label(atoms, "forces"), f0, atol=1e-12)  # −(−F)
        ep = float(np.sum(e_i) + d_e)
        assert get_label(atoms, "energy") == pytest.approx(ep, abs=1e-6)  # Ep, not Etot
        ae = get_label(atoms, "atomic_energies")
        np.testing.assert_allclose(ae, e_i + d_e / n, atol=1e-6)
        assert ae.sum() == pytest.approx(get_label(atoms, "energy"), abs=1e-9)
        np.testing.assert_allclose(get_label(atoms, "stress"), -w / a0.cell.volume, rtol=1e-5, atol=1e-9)
        assert atoms.info["trajectory"] == "0_300_MOVEMENT" and atoms.info["step"] == k
        assert atoms.info["time_fs"] == pytest.approx(k + 1)


def test_force_header_without_minus_is_the_same_gradient(tmp_path):
    atoms, forces = bulk("Cu", "fcc", a=3.6, cubic=True), np.arange(12.0).reshape(4, 3) / 10
    path = tmp_path / "MOVEMENT"
    path.write_text(frame_text(atoms, forces, np.ones(4), 0.0, -1.0, force_header="Force (eV/Angstrom)"))
    (frame,) = read_movement(path)
    np.testing.assert_allclose(get_label(frame, "forces"), forces)
    assert get_label(frame, "stress") is None


def test_read_frames_dispatch_and_tail_split(tmp_path):
    for name, seed in (("0_300_MOVEMENT", 0), ("1_500_MOVEMENT", 1)):
        (tmp_path / name).write_text(synthetic(10, seed)[1])
    frames = []
    for name in ("0_300_MOVEMENT", "1_500_MOVEMENT"):
        frames += read_frames(tmp_path / name, require=("energy", "forces", "atomic_energies"))
    assert len(frames) == 20
    assert len(read_movements(sorted(tmp_path.iterdir()))) == 20
    split = split_frames(frames, "tail", (0.8, 0.1, 0.1))
    assert split["val"] == [8, 18] and split["test"] == [9, 19]  # the last 20 % of each trajectory, in time order
    other = tmp_path / "data.txt"
    other.write_text(synthetic(1)[1])
    assert len(read_frames(other, format="movement")) == 1


@pytest.mark.parametrize("damage, what", [
    (lambda t: t[: t.rindex("Atomic-Energy")], "truncated"),
    (lambda t: t[: t.rindex(" -----")], "truncated"),
    (lambda t: t[: t.rindex(" Velocity")].rsplit("\n", 3)[0] + "\n", "Force block is cut short"),
    (lambda t: t.replace("0.001 0.002 0.003", "0.001 abc 0.003"), "not a number"),
])
def test_truncated_or_malformed_last_frame(tmp_path, damage, what):
    _, text = synthetic(3)
    path = tmp_path / "MOVEMENT"
    path.write_text(damage(text))
    with pytest.raises(MovementError) as err:
        read_movement(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "frame" in msg and what in msg, msg
    if what != "not a number":  # damage in the last frame only: the frames before it are kept on request
        assert "frame 2" in msg
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            good = read_movement(path, on_error="stop")
        assert len(good) == 2 and any("frame 2" in str(w.message) for w in caught)
    with pytest.raises(DataError):  # read_frames raises (one line, a DataError)
        read_frames(path)


def test_not_a_movement_file(tmp_path):
    path = tmp_path / "MOVEMENT"
    path.write_text("hello\n")
    with pytest.raises(MovementError, match="not a MOVEMENT file"):
        read_movement(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_frames(path)


@pytest.mark.parametrize("folder, files, n_frames, n_atoms", [
    ("pwmat_cu", ["0_300_MOVEMENT", "1_500_MOVEMENT"], 100, 72),
    ("pwmat_lisi", ["lisi_50_movement"], 50, 76),
])
def test_shared_files(shared_data, folder, files, n_frames, n_atoms):
    for name in files:
        frames = read_frames(shared_data / folder / name, require=("energy", "forces", "atomic_energies", "stress"))
        assert len(frames) == n_frames
        for a in frames:
            assert len(a) == n_atoms and get_label(a, "forces").shape == (n_atoms, 3)
            assert get_label(a, "atomic_energies").sum() == pytest.approx(get_label(a, "energy"), abs=1e-6)
        # the force sign: along the MD, Ep(t+1) − Ep(t) ≈ −½ (F(t) + F(t+1)) · Δr
        de, work = [], []
        for a, b in zip(frames[:10], frames[1:11]):
            d = b.get_scaled_positions(wrap=False) - a.get_scaled_positions(wrap=False)
            dr = (d - np.round(d)) @ a.cell.array
            de.append(get_label(b, "energy") - get_label(a, "energy"))
            work.append(-float((0.5 * (get_label(a, "forces") + get_label(b, "forces")) * dr).sum()))
        de, work = np.array(de), np.array(work)
        assert np.abs(de - work).max() < 0.2 * np.abs(de).max(), (de, work)
