"""aenet XSF reader: energy header, forces in eV/Å, periodic and molecular files, bad input."""

import numpy as np
import pytest

from mlpot.data.frames import get_label, read_frames
from mlpot.errors import DataError, EmptyFileError
from tests.conftest import SHARED

CRYSTAL = """# total energy = -19.5 eV

CRYSTAL
PRIMVEC
 3.0 0.0 0.0
 0.0 3.1 0.0
 0.0 0.0 3.2
PRIMCOORD
2 1
Ti 0.0 0.0 0.0 0.1 -0.2 0.3
O  1.5 1.5 1.5 -0.1 0.2 -0.3
"""
MOLECULE = """# total energy = -3.25 eV
ATOMS
O 0.0 0.0 0.0
H 0.0 0.0 0.96
"""


def write(tmp_path, text, name="s.xsf"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_periodic_structure(tmp_path):
    (a,) = read_frames(write(tmp_path, CRYSTAL))
    assert a.get_chemical_symbols() == ["Ti", "O"] and a.pbc.all()
    np.testing.assert_allclose(a.cell.lengths(), [3.0, 3.1, 3.2])
    assert get_label(a, "energy") == -19.5
    np.testing.assert_allclose(get_label(a, "forces"), [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])  # eV/Å, unscaled


def test_molecule(tmp_path):
    (a,) = read_frames(write(tmp_path, MOLECULE))
    assert not a.pbc.any() and len(a) == 2 and get_label(a, "energy") == -3.25
    assert get_label(a, "forces") is None


@pytest.mark.parametrize(
    "text, match",
    [
        (CRYSTAL.replace("2 1", "3 1"), "line 8: PRIMCOORD announces 3 atoms"),
        (CRYSTAL.replace("Ti 0.0 0.0 0.0 0.1", "Ti 0.0 0.0 0.1"), "line 10: atom row needs"),
        (CRYSTAL.replace("O  1.5", "Xx 1.5"), "line 11: unknown element 'Xx'"),
        (CRYSTAL.replace("-19.5", "abc"), "line 1: energy 'abc' is not a number"),
        (CRYSTAL.replace("PRIMVEC\n 3.0 0.0 0.0\n 0.0 3.1 0.0\n 0.0 0.0 3.2\n", ""), "CRYSTAL without PRIMVEC"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(DataError, match=match) as err:
        read_frames(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_empty_file(tmp_path):
    with pytest.raises(EmptyFileError):
        read_frames(write(tmp_path, ""))


@pytest.mark.skipif(not (SHARED / "aenet_tio2/xsf").exists(), reason="../shared not available")
def test_real_tio2_files():
    files = sorted((SHARED / "aenet_tio2/xsf").glob("*.xsf"))[:20]
    assert len(files) == 20
    for f in files:
        (a,) = read_frames(f)
        assert set(a.get_chemical_symbols()) <= {"Ti", "O"}
        assert get_label(a, "energy") < 0 and get_label(a, "forces").shape == (len(a), 3)
