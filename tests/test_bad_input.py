"""Bad input gives the specific mlpot error, with a one-line message that names where the problem is:
the file and the frame (data) or the file and the line (n2p2 model files)."""

from __future__ import annotations

import hashlib

import numpy as np
import ase.io
import pytest
from ase import Atoms
from ase.build import bulk

from mlpot.calculator import MLPotCalculator
from mlpot.data import LabelKeys, atoms_to_graph, read_frames
from mlpot.data.frames import get_label
from mlpot.errors import (
    DataError,
    DataPathError,
    DegenerateCellError,
    EmptyFileError,
    InputNNError,
    MissingLabelError,
    ModelFileError,
    NonFiniteError,
    OverlappingAtomsError,
    ScalingDataError,
    UnknownElementError,
    WeightsFileError,
)
from mlpot.io import n2p2

# ---------------------------------------------------------------- helpers


def one_line(err) -> str:
    msg = str(err.value if hasattr(err, "value") else err)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


def assert_names_frame(excinfo, path, frame: int):
    msg = one_line(excinfo)
    assert str(path) in msg, msg
    assert f"frame {frame}" in msg, msg
    assert excinfo.value.source == str(path)
    assert excinfo.value.frame == frame


def assert_names_line(excinfo, path, line: int | None):
    msg = one_line(excinfo)
    assert str(path) in msg, msg
    if line is not None:
        assert f"line {line}:" in msg, msg
        assert excinfo.value.line == line


def xyz_frame(rows, energy="-7.5", cell=8.0, pbc="T T T", props="species:S:1:pos:R:3:forces:R:3", extra=""):
    """One extxyz frame as plain text (so that NaN/inf can be written); rows are already-formatted atom lines."""
    head = f'Lattice="{cell} 0 0 0 {cell} 0 0 0 {cell}" Properties={props} pbc="{pbc}"'
    if energy is not None:
        head += f" energy={energy}"
    if extra:
        head += " " + extra
    return f"{len(rows)}\n{head}\n" + "".join(r + "\n" for r in rows)


GOOD = ["Cu 0.0 0.0 0.0 0.1 0.0 0.0", "Cu 1.8 1.8 0.0 -0.1 0.0 0.0", "Cu 1.8 0.0 1.8 0.0 0.0 0.0"]


def write(tmp_path, name, *frames) -> str:
    path = tmp_path / name
    path.write_text("".join(frames))
    return path


def line_of(path, needle: str) -> int:
    """1-based number of the first line of ``path`` that contains ``needle``."""
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def replace_line(path, needle: str, new: str | None) -> int:
    """Replace (or delete, when ``new`` is None) the first line containing ``needle``; its number."""
    lines = path.read_text().splitlines()
    n = line_of(path, needle)
    if new is None:
        del lines[n - 1]
    else:
        lines[n - 1] = new
    path.write_text("\n".join(lines) + "\n")
    return n


# ---------------------------------------------------------------- 1. unknown element


def test_unknown_element_in_calculator(tiny_potential):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms[1].symbol = "Ag"
    atoms.calc = MLPotCalculator(tiny_potential)
    with pytest.raises(UnknownElementError) as exc:
        atoms.get_potential_energy()
    assert "Ag" in one_line(exc)


def test_unknown_element_in_read_frames(tmp_path):
    bad = [GOOD[0], GOOD[1].replace("Cu", "Ag", 1), GOOD[2]]
    path = write(tmp_path, "mixed.xyz", xyz_frame(GOOD), xyz_frame(bad))
    with pytest.raises(UnknownElementError) as exc:
        read_frames(path, elements=["Cu"])
    assert_names_frame(exc, path, 1)
    assert "Ag" in str(exc.value)


def test_unknown_element_in_graph_names_file_and_frame(tmp_path, tiny_potential):
    bad = [GOOD[0], GOOD[1].replace("Cu", "Ag", 1), GOOD[2]]
    path = write(tmp_path, "mixed.xyz", xyz_frame(GOOD), xyz_frame(bad))
    frames = read_frames(path)  # no element list: reading is fine
    with pytest.raises(UnknownElementError) as exc:
        atoms_to_graph(frames, tiny_potential.elements, tiny_potential.cutoff)
    assert_names_frame(exc, path, 1)
    assert "Ag" in str(exc.value)


# ---------------------------------------------------------------- 2. missing labels


@pytest.mark.parametrize("label", ["energy", "forces"])
def test_missing_label(tmp_path, label):
    if label == "energy":
        second = xyz_frame(GOOD, energy=None)
    else:
        second = xyz_frame([r.rsplit(None, 3)[0] for r in GOOD], props="species:S:1:pos:R:3")
    path = write(tmp_path, f"no_{label}.xyz", xyz_frame(GOOD), second)
    read_frames(path)  # not required: fine
    with pytest.raises(MissingLabelError) as exc:
        read_frames(path, require=(label,))
    assert_names_frame(exc, path, 1)
    assert label in str(exc.value)


def test_missing_custom_label_key(tmp_path):
    path = write(tmp_path, "dft.xyz", xyz_frame(GOOD, energy=None, extra="dft_energy=-7.5"),
                 xyz_frame(GOOD, energy="-7.5"))  # frame 1 has 'energy' but not 'dft_energy'
    frames = read_frames(path, keys=LabelKeys(energy="dft_energy"))
    assert get_label(frames[0], "energy") == -7.5
    with pytest.raises(MissingLabelError) as exc:
        read_frames(path, keys=LabelKeys(energy="dft_energy"), require=("energy",))
    assert_names_frame(exc, path, 1)
    assert "dft_energy" in str(exc.value)


# ---------------------------------------------------------------- 3. non-finite values


@pytest.mark.parametrize(
    "what,rows,energy",
    [
        ("position nan", [GOOD[0], "Cu 1.8 nan 0.0 0 0 0", GOOD[2]], "-7.5"),
        ("position inf", [GOOD[0], GOOD[1], "Cu 1.8 0.0 inf 0 0 0"], "-7.5"),
        ("energy nan", GOOD, "nan"),
        ("energy inf", GOOD, "-inf"),
        ("forces nan", [GOOD[0], "Cu 1.8 1.8 0.0 0.1 nan 0.0", GOOD[2]], "-7.5"),
    ],
)
def test_non_finite(tmp_path, what, rows, energy):
    path = write(tmp_path, "nonfinite.xyz", xyz_frame(GOOD), xyz_frame(GOOD), xyz_frame(rows, energy=energy))
    with pytest.raises(NonFiniteError) as exc:
        read_frames(path)
    assert_names_frame(exc, path, 2)
    assert what.split()[0] in str(exc.value)


def test_non_finite_positions_in_calculator(tiny_potential):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[2, 1] = np.nan
    atoms.calc = MLPotCalculator(tiny_potential)
    with pytest.raises(NonFiniteError) as exc:
        atoms.get_potential_energy()
    one_line(exc)


# ---------------------------------------------------------------- 4. overlapping atoms


def test_overlapping_atoms_in_graph(tmp_path, tiny_potential):
    rows = [GOOD[0], "Cu 0.05 0.0 0.0 0 0 0", GOOD[2]]
    path = write(tmp_path, "overlap.xyz", xyz_frame(GOOD), xyz_frame(rows))
    frames = read_frames(path)
    with pytest.raises(OverlappingAtomsError) as exc:
        atoms_to_graph(frames, ["Cu"], 4.0)
    assert_names_frame(exc, path, 1)


def test_overlapping_periodic_image(tmp_path):
    """An atom on top of another one's periodic image (x = 0 and x = a - 0.02)."""
    rows = [GOOD[0], "Cu 7.98 0.0 0.0 0 0 0"]
    path = write(tmp_path, "image.xyz", xyz_frame(rows))
    with pytest.raises(OverlappingAtomsError) as exc:
        atoms_to_graph(read_frames(path), ["Cu"], 4.0)
    assert_names_frame(exc, path, 0)


@pytest.mark.parametrize("distance", [0.0, 0.09])
def test_overlapping_atoms_in_calculator(tiny_potential, distance):
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [distance, 0, 0], [2.0, 0, 0]])
    atoms.calc = MLPotCalculator(tiny_potential)
    with pytest.raises(OverlappingAtomsError) as exc:
        atoms.get_forces()
    one_line(exc)


# ---------------------------------------------------------------- 5. degenerate cell


@pytest.mark.parametrize(
    "cell", [np.zeros((3, 3)), [[3.0, 0, 0], [3.0, 0, 0], [0, 0, 3.0]], [[3.0, 0, 0], [0, 3.0, 0], [1.0, 1.0, 0]]]
)
def test_zero_volume_cell(tiny_potential, cell):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.8, 0, 0]], cell=cell, pbc=True)
    atoms.calc = MLPotCalculator(tiny_potential)
    with pytest.raises(DegenerateCellError) as exc:
        atoms.get_potential_energy()
    one_line(exc)


def test_zero_volume_cell_from_file(tmp_path):
    head = 'Lattice="3 0 0 3 0 0 0 0 3" Properties=species:S:1:pos:R:3 pbc="T T T"'
    path = write(tmp_path, "flat.xyz", xyz_frame(GOOD), f"2\n{head}\nCu 0 0 0\nCu 1.8 0 0\n")
    with pytest.raises(DegenerateCellError) as exc:
        atoms_to_graph(read_frames(path), ["Cu"], 4.0)
    assert_names_frame(exc, path, 1)


# ---------------------------------------------------------------- 6. empty / missing files


@pytest.mark.parametrize("content", ["", "\n", "  \n\n\t\n"], ids=["zero-bytes", "newline", "whitespace"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path, "empty.xyz", content)
    with pytest.raises(EmptyFileError) as exc:
        read_frames(path)
    msg = one_line(exc)
    assert str(path) in msg
    assert exc.value.source == str(path)


def test_frame_without_atoms(tmp_path):
    from tests.helpers import random_cell

    good = random_cell(["Cu", "Cu"], seed=1)
    path = tmp_path / "mixed.extxyz"
    ase.io.write(path, [good, Atoms(cell=good.cell, pbc=True), good])
    with pytest.raises(EmptyFileError) as exc:
        read_frames(path)
    assert one_line(exc) == f"{path}, frame 1: frame has no atoms" and exc.value.frame == 1


def test_missing_path(tmp_path):
    path = tmp_path / "nope" / "train.xyz"
    with pytest.raises(DataPathError) as exc:
        read_frames(path)
    assert str(path) in one_line(exc)
    assert isinstance(exc.value, FileNotFoundError)


def test_unreadable_file_is_data_error(tmp_path):
    path = write(tmp_path, "garbage.xyz", "this is not\nan xyz file\n")
    with pytest.raises(DataError) as exc:
        read_frames(path)
    assert str(path) in one_line(exc)


# ---------------------------------------------------------------- 7. malformed n2p2 potential files


def test_tiny_n2p2_folder_is_valid(n2p2_folder):
    pot = n2p2.load(n2p2_folder)
    assert pot.elements == ["Cu"]
    assert pot.descriptor.n_features_per_element == [4]
    out = pot.predict(bulk("Cu", "fcc", a=3.6, cubic=True))
    assert np.isfinite(out["energy"].item())


@pytest.mark.parametrize(
    "needle,new,match",
    [
        ("Cu 2 Cu 5.000E-01", "symfunction_short Cu 2 Cu abc 0.0 4.0", "'abc' is not a number"),
        ("Cu 3 Cu Cu", "symfunction_short Cu 3 Cu Cu 0.1 1 zeta 4.0 0.0", "'zeta' is not a number"),
        ("Cu 2 Cu 5.000E-01", "symfunction_short Cu 5 Cu 0.5 0.0 4.0", "type 5 is not supported"),
        ("Cu 2 Cu 5.000E-01", "symfunction_short Cu x Cu 0.5 0.0 4.0", "not an integer"),
        ("Cu 2 Cu 5.000E-01", "symfunction_short Cu 2 Cu 0.5 4.0", "type 2 needs"),
        ("Cu 2 Cu 5.000E-01", "symfunction_short Cu 2 Ag 0.5 0.0 4.0", "'Ag'"),
        ("Cu 2 Cu 5.000E-01", "symfunction_short Cu 2 Cu nan 0.0 4.0", "'nan'"),
        ("cutoff_type", "cutoff_type 42", "cutoff_type 42"),
        ("global_activation_short", "global_activation_short q l", "activation 'q'"),
        ("global_hidden_layers_short", "global_hidden_layers_short", "needs a value"),
        ("global_hidden_layers_short", "global_hidden_layers_short many", "'many' is not a number"),
    ],
)
def test_malformed_input_nn(n2p2_folder, needle, new, match):
    path = n2p2_folder / "input.nn"
    n = replace_line(path, needle, new)
    with pytest.raises(InputNNError) as exc:
        n2p2.load(n2p2_folder)
    assert_names_line(exc, path, n)
    assert match in str(exc.value)


def test_input_nn_missing_keyword(n2p2_folder):
    path = n2p2_folder / "input.nn"
    replace_line(path, "cutoff_type", None)
    with pytest.raises(InputNNError) as exc:
        n2p2.load(n2p2_folder)
    assert_names_line(exc, path, None)
    assert "cutoff_type" in str(exc.value)


@pytest.mark.parametrize(
    "kind,match",
    [("missing row", "no row for element 1, function 3"), ("columns", "expected 6 columns"),
     ("not a number", "'x.y' is not a number"), ("index", "out of range"), ("duplicate", "twice")],
)
def test_malformed_scaling_data(n2p2_folder, kind, match):
    path = n2p2_folder / "scaling.data"
    lines = path.read_text().splitlines()
    n = line_of(path, "         1          3 ")
    if kind == "missing row":
        del lines[n - 1]
        n = None
    elif kind == "columns":
        lines[n - 1] = " ".join(lines[n - 1].split()[:5])
    elif kind == "not a number":
        tok = lines[n - 1].split()
        tok[4] = "x.y"
        lines[n - 1] = " ".join(tok)
    elif kind == "index":
        lines[n - 1] = lines[n - 1].replace("         1          3 ", "         1          9 ")
    elif kind == "duplicate":  # row 3 replaced by a second copy of row 2
        lines[n - 1] = lines[n - 2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScalingDataError) as exc:
        n2p2.load(n2p2_folder)
    assert_names_line(exc, path, n)
    assert match in str(exc.value)


@pytest.mark.parametrize(
    "kind,match",
    [("not a number", "'1.0Q' is not a number"), ("missing connection", "missing"), ("columns", "expected 7 columns"),
     ("bad index", "does not fit"), ("type", "connection type 'c'"), ("duplicate", "twice"),
     ("missing bias", "missing"), ("nan", "'nan'")],
)
def test_malformed_weights(n2p2_folder, kind, match):
    path = n2p2_folder / "weights.029.data"
    lines = path.read_text().splitlines()
    n = line_of(path, " a         5 ")
    tok = lines[n - 1].split()
    if kind == "not a number":
        tok[0] = "1.0Q"
    elif kind == "missing connection":
        tok = None
    elif kind == "columns":
        tok = tok[:6]
    elif kind == "bad index":
        tok[6] = "7"
    elif kind == "type":
        tok[1] = "c"
    elif kind == "duplicate":  # connection 5 replaced by a second copy of connection 4
        tok = lines[n - 2].split()
    elif kind == "missing bias":
        n = line_of(path, " b ")
        tok = None
    elif kind == "nan":
        tok[0] = "nan"
    if tok is None:
        del lines[n - 1]
        n = None
    else:
        lines[n - 1] = " ".join(tok)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(WeightsFileError) as exc:
        n2p2.load(n2p2_folder)
    assert_names_line(exc, path, n)
    assert match in str(exc.value)


@pytest.mark.parametrize("name", ["input.nn", "scaling.data", "weights.029.data"])
def test_n2p2_missing_file(n2p2_folder, name):
    (n2p2_folder / name).unlink()
    with pytest.raises(ModelFileError) as exc:
        n2p2.load(n2p2_folder)
    assert str(n2p2_folder / name) in one_line(exc)


def test_n2p2_binary_file(n2p2_folder):
    path = n2p2_folder / "scaling.data"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01")
    with pytest.raises(ScalingDataError) as exc:
        n2p2.load(n2p2_folder)
    assert str(path) in one_line(exc)


# ---------------------------------------------------------------- 8. malformed n2p2 input.data

INPUT_DATA_FRAME = """\
begin
comment a frame
lattice 6.0 0.0 0.0
lattice 0.0 6.0 0.0
lattice 0.0 0.0 6.0
atom 0.0 0.0 0.0 Cu 0.0 0.0 0.1 0.0 0.0
atom 1.8 1.8 0.0 Cu 0.0 0.0 -0.1 0.0 0.0
energy -7.5
charge 0.0
end
"""


@pytest.mark.parametrize(
    "needle,new,match",
    [
        ("atom 1.8", "atom 1.8 abc 0.0 Cu 0.0 0.0 -0.1 0.0 0.0", "malformed 'atom'"),
        ("atom 1.8", "atom 1.8 1.8 0.0 Cu 0.0 0.0", "malformed 'atom'"),
        ("atom 1.8", "atom 1.8 1.8 0.0 Xx 0.0 0.0 -0.1 0.0 0.0", "Xx"),
        ("energy", "energy", "malformed 'energy'"),
        ("lattice 0.0 6.0", "lattice 0.0 six 0.0", "malformed 'lattice'"),
        ("lattice 0.0 6.0", None, "lattice"),
        ("end", None, "not closed"),
    ],
)
def test_malformed_input_data(tmp_path, needle, new, match):
    path = tmp_path / "input.data"
    path.write_text(INPUT_DATA_FRAME * 3)
    assert len(n2p2.read_input_data(path)) == 3
    lines = path.read_text().splitlines()
    start = 2 * len(INPUT_DATA_FRAME.splitlines())  # corrupt frame 2
    n = start + next(k for k, l in enumerate(lines[start:]) if l.startswith(needle)) + 1
    if new is None:
        del lines[n - 1]
    else:
        lines[n - 1] = new
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        n2p2.read_input_data(path)
    assert_names_frame(exc, path, 2)
    assert match in str(exc.value)


def test_input_data_begin_before_end(tmp_path):
    path = tmp_path / "input.data"
    path.write_text(INPUT_DATA_FRAME + INPUT_DATA_FRAME.replace("end\n", "") + INPUT_DATA_FRAME)
    with pytest.raises(DataError) as exc:
        n2p2.read_input_data(path)
    assert_names_frame(exc, path, 1)


def test_input_data_non_finite(tmp_path):
    path = tmp_path / "input.data"
    path.write_text(INPUT_DATA_FRAME + INPUT_DATA_FRAME.replace("energy -7.5", "energy nan"))
    with pytest.raises(NonFiniteError) as exc:
        n2p2.read_input_data(path)
    assert_names_frame(exc, path, 1)


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["zero-bytes", "blank"])
def test_input_data_empty(tmp_path, content):
    path = tmp_path / "input.data"
    path.write_text(content)
    with pytest.raises(EmptyFileError) as exc:
        n2p2.read_input_data(path)
    assert str(path) in one_line(exc)


def test_input_data_missing_path(tmp_path):
    path = tmp_path / "nope" / "input.data"
    with pytest.raises(DataPathError) as exc:
        n2p2.read_input_data(path)
    assert str(path) in one_line(exc)


# ---------------------------------------------------------------- failed reads leave files alone


def _digest(folder):
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_failed_reads_leave_files_untouched(tmp_path, n2p2_folder):
    good = write(tmp_path, "good.xyz", xyz_frame(GOOD), xyz_frame(GOOD, energy="-7.25"))
    bad = write(tmp_path, "bad.xyz", xyz_frame(GOOD), xyz_frame([GOOD[0], "Cu 1.8 nan 0 0 0 0", GOOD[2]]))
    replace_line(n2p2_folder / "weights.029.data", " a         5 ", None)
    before, before_n2p2 = _digest(tmp_path), _digest(n2p2_folder)

    expected = read_frames(good, require=("energy", "forces"))
    for _ in range(2):
        with pytest.raises(NonFiniteError):
            read_frames(bad)
        with pytest.raises(MissingLabelError):
            read_frames(good, require=("stress",))
        with pytest.raises(WeightsFileError):
            n2p2.load(n2p2_folder)
        again = read_frames(good, require=("energy", "forces"))  # a valid read after errors is not corrupted
        assert [get_label(a, "energy") for a in again] == [get_label(a, "energy") for a in expected] == [-7.5, -7.25]
        for a, b in zip(again, expected):
            np.testing.assert_array_equal(a.positions, b.positions)
            np.testing.assert_array_equal(get_label(a, "forces"), get_label(b, "forces"))
    assert _digest(tmp_path) == before
    assert _digest(n2p2_folder) == before_n2p2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "n2p2"])
    assert sorted(p.name for p in n2p2_folder.iterdir()) == sorted(before_n2p2)
