"""Shared fixtures: a tiny potential, a tiny valid n2p2 potential folder, the shared data folder, one torch
thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# ../shared/data beside the repository (absent on some machines: tests that need it skip)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder; skips the test where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder {SHARED} not present")
    return SHARED


def build_tiny_potential():
    """A float64 single-element (Cu) HDNNP with random weights, cutoff 4 Å, 6 features."""
    import torch

    from mlpot.descriptors import build_acsf
    from mlpot.models import HDNNP, Potential

    torch.manual_seed(0)
    d = build_acsf(["Cu"], cutoff=4.0, radial={"eta": [0.5, 1.0]},
                   angular={"type": 9, "eta": [0.1], "zeta": [1, 2], "lambda": [1, -1]})
    return Potential(["Cu"], d, HDNNP(d.n_features_per_element, (8,), "tanh")).double()


# tiny built-in EMT Cu data for end-to-end training tests (generated once per test session): the bulk MD
# and melt trajectories only (no strained cells, slabs or vacancy; those are tested in test_builtin_data.py)
TINY_EMT = dict(n_frames_per_traj=6, repeat=2, equil_steps=8, heat_steps=40, melt_equil_steps=8,
                n_strained=0, n_frames_surface=0, n_frames_vacancy=0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from mlpot.data.builtin import generate_emt_cu

    return generate_emt_cu(tmp_path_factory.mktemp("data") / "emt_tiny.extxyz", **TINY_EMT)


@pytest.fixture
def tiny_potential():
    return build_tiny_potential()


# --- a tiny n2p2 potential: 1 element (Cu), 4 symmetry functions (types 2, 2, 3, 9), 4 -> 3 -> 1 ---

TINY_N2P2_ELEMENT = "Cu"
TINY_N2P2_LAYERS = (4, 3, 1)
TINY_N2P2_INPUT_NN = """\
# tiny n2p2 potential written by mlpot's tests
number_of_elements              1
elements                        Cu
cutoff_type                     1 0.0
scale_symmetry_functions_sigma
scale_min_short                 0.0
scale_max_short                 1.0
global_hidden_layers_short      1
global_nodes_short              3
global_activation_short         t l
atom_energy                     Cu -1.5
# element type neighbour(s) eta [lambda zeta] rc [rs]
symfunction_short Cu 2 Cu 5.000E-01 0.000E+00 4.000E+00
symfunction_short Cu 2 Cu 1.000E+00 2.000E+00 4.000E+00
symfunction_short Cu 3 Cu Cu 1.000E-01 1 2.000E+00 4.000E+00 0.000E+00
symfunction_short Cu 9 Cu Cu 5.000E-02 -1 1.000E+00 4.000E+00
"""


def _tiny_scaling() -> str:
    rows = ["# e_index sf_index min max mean sigma"]
    for k in range(TINY_N2P2_LAYERS[0]):
        lo, hi = 0.01 * (k + 1), 1.0 + 0.5 * k
        rows.append(f"{1:10d} {k + 1:10d} {lo:24.16E} {hi:24.16E} {0.5 * (lo + hi):24.16E} {0.2 + 0.1 * k:24.16E}")
    return "\n".join(rows) + "\n"


def _tiny_weights(seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    rows = ["# connection t index l_s n_s l_e n_e"]
    index = 0
    for ls in range(len(TINY_N2P2_LAYERS) - 1):
        le = ls + 1
        for ns in range(1, TINY_N2P2_LAYERS[ls] + 1):
            for ne in range(1, TINY_N2P2_LAYERS[le] + 1):
                index += 1
                rows.append(f"{rng.normal(0, 0.5):24.16E} a {index:9d} {ls:5d} {ns:5d} {le:5d} {ne:5d}")
        for ne in range(1, TINY_N2P2_LAYERS[le] + 1):
            index += 1
            rows.append(f"{rng.normal(0, 0.1):24.16E} b {index:9d} {le:5d} {ne:5d}")
    return "\n".join(rows) + "\n"


def write_tiny_n2p2(folder) -> Path:
    """Write a valid tiny n2p2 potential (input.nn, scaling.data, weights.029.data) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.nn").write_text(TINY_N2P2_INPUT_NN)
    (folder / "scaling.data").write_text(_tiny_scaling())
    (folder / "weights.029.data").write_text(_tiny_weights())
    return folder


@pytest.fixture
def n2p2_folder(tmp_path) -> Path:
    """A freshly written, valid tiny n2p2 potential folder (function scope: safe to corrupt)."""
    return write_tiny_n2p2(tmp_path / "n2p2")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: intra-op threads only add wake-up latency (10x on a loaded 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
