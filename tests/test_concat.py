"""Concatenated descriptors: columns per element, the pair Jacobian, derivatives, invariances, export."""

import numpy as np
import pytest
import torch

from mlpot.descriptors import Concat, SphericalBessel, build_acsf
from mlpot.models import HDNNP, Potential
from tests.helpers import check_invariances, check_pair_jacobian, random_cell
from tests.test_derivatives import check_forces_and_stress
from tests.test_descriptors_more import pair_data

ELEMENTS = ["Ti", "O"]


def parts():
    bessel = SphericalBessel(ELEMENTS, n_max=3, cutoff=4.5, coupled=True)
    # a shorter cutoff, and more functions for Ti than for O (per-element widths differ)
    acsf = build_acsf(ELEMENTS, cutoff=3.8, radial={"eta": [0.05, 0.5], "rs": [0.0, 1.5]},
                      functions=[{"type": 2, "central": "Ti", "eta": 1.0, "rs": 2.0},
                                 {"type": 9, "central": "Ti", "eta": 0.1, "zeta": 2.0, "lambda": -1.0}])
    return bessel, acsf


def potential(seed=0):
    torch.manual_seed(seed)
    d = Concat(list(parts()))
    head = HDNNP(d.n_features_per_element, (8, 8), "tanh", e0=[-1.0, -2.0])
    return Potential(ELEMENTS, d, head).double()


def test_columns_are_the_parts_side_by_side():
    bessel, acsf = (p.double() for p in parts())
    d = Concat([bessel, acsf]).double()
    assert d.cutoff == 4.5
    assert d.n_features_per_element == [bessel.n_features + acsf.n_features_per_element[0],
                                        bessel.n_features + acsf.n_features_per_element[1]]
    atoms = random_cell(["Ti", "O", "O", "Ti", "O", "O"], a=3.6, seed=1)
    g, vec = pair_data(d, atoms)
    G = d.from_edges(vec, g.species, g.edge_index)
    Gb = bessel.from_edges(vec, g.species, g.edge_index)
    r = torch.linalg.norm(vec, dim=-1)
    inside = r < acsf.cutoff
    assert not bool(inside.all())  # the ACSF part really sees fewer pairs
    Ga = acsf.from_edges(vec[inside], g.species, g.edge_index[:, inside])
    for k, z in enumerate(g.species.tolist()):
        n_a = acsf.n_features_per_element[z]
        want = torch.cat([Gb[k], Ga[k, :n_a]])
        assert torch.allclose(G[k, : want.numel()], want, atol=1e-14)
        assert bool((G[k, want.numel():] == 0).all())  # padding


def test_pair_jacobian_equals_autograd():
    d = Concat(list(parts())).double()
    check_pair_jacobian(d, *pair_data(d, random_cell(["Ti", "O", "O", "Ti", "O", "O"], a=3.5, seed=3)))


def test_finite_differences_and_invariances():
    pot = potential(seed=4)
    check_forces_and_stress(pot, random_cell(["Ti", "O", "O", "Ti", "O"], a=3.4, seed=5))
    check_invariances(pot, random_cell(["Ti", "O", "O", "Ti", "O", "O"], a=3.8, seed=7))


def test_export_round_trip(tmp_path):
    from mlpot.export import load, save

    pot = potential(seed=8)
    save(pot, tmp_path / "m.pt")
    back = load(tmp_path / "m.pt").double()
    assert isinstance(back.descriptor, Concat)
    atoms = random_cell(["Ti", "O", "O", "Ti"], a=3.6, seed=9)
    a, b = pot.predict(atoms), back.predict(atoms)
    assert abs(a["energy"].item() - b["energy"].item()) < 1e-12
    np.testing.assert_allclose(a["forces"].numpy(), b["forces"].numpy(), atol=1e-12)


def test_parts_must_share_elements():
    with pytest.raises(ValueError, match="elements"):
        Concat([SphericalBessel(["Ti", "O"], n_max=2, cutoff=4.0), SphericalBessel(["O", "Ti"], n_max=2, cutoff=4.0)])


def test_trains_from_config_and_exports(tiny_data, tmp_path):
    """descriptor=bessel_acsf composes, trains over the cached Jacobians and exports a Concat."""
    from hydra import compose, initialize_config_dir

    import mlpot
    from mlpot.train import CONF_DIR, run

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"run_dir={tmp_path}", f"data.path={tiny_data}", "data.batch_size=4", "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false", "cutoff=4.0", "model.hidden=[8,8]", "dtype=float64",
            "descriptor=bessel_acsf", "descriptor.parts.0.n_max=2"])
    metrics = run(cfg)
    assert np.isfinite(metrics["test/forces_rmse"])
    pot = mlpot.load(tmp_path / "model.pt")
    assert isinstance(pot.descriptor, Concat) and pot.descriptor.n_features == 10 + 15  # p_nn'l for n_max 2; 3 widths x 5 centres
