"""The HDNNP head's optional linear readout: E_i = s (NN_Z(x_i) + w_Z · x_i) + E0_Z."""

import torch

from mlpot.models import HDNNP


def zero_network(head):
    for mlp in head.nets.nets:
        for p in mlp.parameters():
            torch.nn.init.zeros_(p)


def test_linear_readout_is_w_dot_x_and_ignores_padding():
    head = HDNNP([3, 2], (4,), "silu", e0=[-1.0, -2.0], energy_scale=[2.0, 0.5], linear=True).double()
    zero_network(head)
    with torch.no_grad():
        head.linear.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]]))  # 99: element 1's padding column
    x = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 7.0]], dtype=torch.float64)
    e = head(x, torch.tensor([0, 1]))
    torch.testing.assert_close(e, torch.tensor([2.0 * 6.0 - 1.0, 0.5 * 14.0 - 2.0], dtype=torch.float64))
    assert head.config()["linear"] is True


def test_without_linear_nothing_changes():
    torch.manual_seed(0)
    plain = HDNNP([3], (4,), "silu").double()
    torch.manual_seed(0)
    lin = HDNNP([3], (4,), "silu", linear=True).double()  # the readout starts at zero
    x = torch.randn(5, 3, dtype=torch.float64)
    s = torch.zeros(5, dtype=torch.long)
    torch.testing.assert_close(plain(x, s), lin(x, s))
    assert "linear" not in plain.config() and plain.linear is None


def test_export_keeps_the_readout(tmp_path):
    from mlpot.descriptors import SphericalBessel
    from mlpot.export import load, save
    from mlpot.models import Potential
    from tests.helpers import random_cell

    d = SphericalBessel(["Ti", "O"], n_max=2, cutoff=4.0)
    head = HDNNP(d.n_features_per_element, (4,), "silu", linear=True)
    with torch.no_grad():
        head.linear.normal_()
    pot = Potential(["Ti", "O"], d, head).double()
    save(pot, tmp_path / "m.pt")
    back = load(tmp_path / "m.pt").double()
    atoms = random_cell(["Ti", "O", "O"], a=3.4, seed=2)
    assert back.head.linear is not None
    assert abs(pot.predict(atoms)["energy"].item() - back.predict(atoms)["energy"].item()) < 1e-12
