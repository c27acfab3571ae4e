"""Small builders shared by the tests (no fixtures: plain functions)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from mlpot.descriptors import build_acsf
from mlpot.models import HDNNP, Potential


def random_potential(elements, types=(2, 3, 9), cutoff=4.5, cutoff_function="cos", alpha=0.0, seed=0,
                     hidden=(10, 10), activation="tanh"):
    """A float64 HDNNP with random weights and a few symmetry functions of the given types."""
    torch.manual_seed(seed)
    functions = []
    if 2 in types:
        functions += [{"type": 2, "eta": eta, "rs": rs} for eta, rs in ((0.5, 0.0), (1.0, 2.0), (0.2, 1.0))]
    for t in (3, 9):
        if t in types:
            functions += [{"type": t, "eta": eta, "zeta": z, "lambda": lam, "rs": rs}
                          for eta, z, lam, rs in ((0.05, 1.0, 1.0, 0.0), (0.1, 2.0, -1.0, 0.5), (0.02, 4.0, 1.0, 0.0))]
    d = build_acsf(elements, cutoff=cutoff, cutoff_function=cutoff_function, alpha=alpha, functions=functions)
    head = HDNNP(d.n_features_per_element, hidden, activation, e0=[-1.0 - k for k in range(len(elements))])
    pot = Potential(elements, d, head).double()
    # non-trivial scaling so that the scaler is exercised
    n_el, F = pot.scaler.a.shape
    g = torch.Generator().manual_seed(seed)
    pot.scaler.a.copy_(0.5 + torch.rand(n_el, F, generator=g, dtype=torch.float64))
    pot.scaler.b.copy_(torch.randn(n_el, F, generator=g, dtype=torch.float64) * 0.1)
    return pot


def random_cell(symbols, a=3.4, seed=0, rattle=0.15, pbc=True, shear=0.1):
    """A small triclinic periodic structure with rattled positions."""
    rng = np.random.default_rng(seed)
    n = len(symbols)
    cell = np.eye(3) * a + rng.uniform(-shear, shear, (3, 3)) * a
    frac = (np.arange(n)[:, None] + rng.uniform(0, 1, (n, 3))) / n
    atoms = Atoms(symbols, scaled_positions=frac % 1.0, cell=cell, pbc=pbc)
    atoms.positions += rng.normal(0, rattle, (n, 3))
    return atoms


def train_config(run_dir, data_path, *overrides):
    """The composed ``train`` config for a short run on tiny data (later overrides win)."""
    from hydra import compose, initialize_config_dir

    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[
            f"run_dir={run_dir}", f"data.path={data_path}", "data.batch_size=4", "trainer.max_epochs=3",
            "trainer.enable_progress_bar=false", "descriptor.cutoff=4.0", "descriptor.angular.rc=3.5",
            "model.hidden=[8,8]", *overrides])
