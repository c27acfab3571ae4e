"""Parity with n2p2 on its own example potential and on the mlearn benchmark's potentials."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mlpot.data import atoms_to_graph, read_frames
from mlpot.io import n2p2
from mlpot.units import BOHR, HARTREE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")


@needs_shared
def test_cu2s_structure0_energy_and_force():
    """n2p2's test suite expects -573.65603183874578 eV; nnp-predict prints the force on atom 1 (S)."""
    pot = n2p2.load(SHARED / "n2p2_cu2s")
    frames = n2p2.read_input_data(SHARED / "n2p2_cu2s" / "input.data")
    out = pot.predict(frames[0])
    assert abs(out["energy"].item() - (-573.65603183874578)) < 1e-6
    expected = np.array([-0.140007861, 0.0274032613, -0.00596150479])
    np.testing.assert_allclose(out["forces"][0].numpy(), expected, rtol=0, atol=1e-8)
    assert frames[0].get_chemical_symbols()[0] == "S"


@needs_shared
def test_cu2s_sorting_and_scaling():
    pot = n2p2.load(SHARED / "n2p2_cu2s")
    assert pot.elements == ["S", "Cu"]  # n2p2 orders by atomic number
    assert pot.descriptor.n_features_per_element == [72, 66]
    assert pot.scaler.mode == "sigma"
    first = pot.descriptor.per_element[0][:3]
    assert [(f.type, f.neighbors, f.rs) for f in first] == [(2, ("S",), 1.5), (2, ("Cu",), 1.5), (2, ("S",), 2.0)]


@needs_shared
@pytest.mark.parametrize("element,e_mae,f_mae", [("Mo", 3.65, 0.125), ("Si", 5.63, 0.109)])
def test_mlearn_n2p2_potentials(element, e_mae, f_mae):
    """What n2p2 itself gives on the benchmark's test frames (Bohr/Hartree inside the files)."""
    pot = n2p2.load(SHARED / "mlearn" / element / "n2p2", length_unit=BOHR, energy_unit=HARTREE)
    frames = read_frames(SHARED / "mlearn" / element / "test.xyz")
    graph = atoms_to_graph(frames, pot.elements, pot.cutoff)
    out = pot(graph)
    e = ((out["energy"].detach() - graph.energy) / graph.n_atoms).abs().mean().item() * 1000
    f = (out["forces"] - graph.forces).abs().mean().item()
    assert abs(e - e_mae) <= 0.01
    assert abs(f - f_mae) <= 0.01


def test_unit_factors_are_consistent(n2p2_folder):
    """Loading the same files with length/energy units changes the results exactly as it must."""
    from tests.helpers import random_cell

    pot1 = n2p2.load(n2p2_folder)
    pot2 = n2p2.load(n2p2_folder, length_unit=BOHR, energy_unit=HARTREE)
    el = pot1.elements[0]
    atoms = random_cell([el] * 4, a=3.0, seed=9)
    big = atoms.copy()
    big.set_cell(atoms.cell.array * BOHR, scale_atoms=True)
    a, b = pot1.predict(atoms), pot2.predict(big)
    assert abs(b["energy"].item() - HARTREE * a["energy"].item()) < 1e-9 * abs(b["energy"].item())
    torch.testing.assert_close(b["forces"], a["forces"] * HARTREE / BOHR, rtol=1e-9, atol=1e-12)


@needs_shared
def test_descriptor_from_input_nn():
    """descriptor=n2p2: the symmetry functions of an input.nn, in Å, as the loaded potential has them."""
    from mlpot.errors import InputNNError

    folder = SHARED / "mlearn" / "Mo" / "n2p2"
    d = n2p2.acsf_from_input_nn(folder, elements=["Mo"], length_unit="bohr")
    ref = n2p2.load(folder, length_unit=BOHR, energy_unit=HARTREE).descriptor
    assert d.functions == ref.functions and d.n_features == 39
    assert abs(d.cutoff - 9.8265759 * BOHR) < 1e-9
    with pytest.raises(InputNNError, match=r"input.nn.*elements \['Si'\] differ"):
        n2p2.acsf_from_input_nn(folder / "input.nn", elements=["Si"])
    with pytest.raises(InputNNError, match="length_unit"):
        n2p2.acsf_from_input_nn(folder, length_unit="nm")
