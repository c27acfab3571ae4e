"""Deployed models (mlpot.deploy): the traced function equals the model for every descriptor family and head,
on structures other than the one it was traced on; bad files and models give one clear error."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlpot.deploy import (DeployError, _inputs, deploy, energies_and_pair_gradients, load_deployed,
                          read_metadata)
from tests.helpers import random_potential

ELEMENTS = ["Cu", "Ag"]


def alloy(reps=(3, 2, 2), a=3.75, seed=3):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(reps)
    atoms.symbols[np.random.default_rng(seed).permutation(len(atoms))[: len(atoms) // 3]] = "Ag"
    atoms.rattle(0.12, seed=seed)
    return atoms


def check_parity(pot, path, dtype=torch.float64, tol=1e-10):
    module, meta = load_deployed(path)
    assert meta["elements"] == list(pot.elements) and meta["cutoff"] == pytest.approx(pot.cutoff)
    for atoms in (alloy(), alloy((2, 3, 2), a=3.9, seed=4)[:-5]):
        ref = pot.to(dtype).predict(atoms, forces=True)
        vec, species, edge_index = _inputs(pot, atoms, dtype)
        e, c = energies_and_pair_gradients(module, vec, species, edge_index, meta=meta)
        assert float((e - ref["atomic_energies"]).abs().max()) < tol
        # forces from the pair gradients, as pair_style mlpot computes them
        i, j = edge_index
        f = torch.zeros(len(atoms), 3, dtype=c.dtype).index_add(0, i, c).index_add(0, j, -c)
        assert float((f - ref["forces"]).abs().max()) < tol


def descriptor_configs():
    from mlpot.train import CONF_DIR

    return sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CONF_DIR, "descriptor", "*.yaml")))


@pytest.mark.parametrize("name", descriptor_configs())
def test_every_descriptor_deploys(name, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mlpot.models import HDNNP, Potential
    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"descriptor={name}", f"elements={ELEMENTS}", "run_dir=x"])
    if "path" in cfg.descriptor.keys():
        pytest.skip("n2p2 descriptor: needs a potential folder (test_n2p2 covers imported models)")
    torch.manual_seed(0)
    d = instantiate(cfg.descriptor)
    pot = Potential(ELEMENTS, d, HDNNP(d.n_features_per_element, (8,), "tanh", e0=[-3.0, -2.5])).double().eval()
    check_parity(pot, deploy(pot, tmp_path / "m.pt"))


def test_acsf_with_triplet_functions_and_float32(tmp_path):
    """Type-3 (narrow) functions go through triplets, whose count the trace must not keep; float32 deploys too."""
    pot = random_potential(ELEMENTS, types=(2, 3, 9))
    check_parity(pot, deploy(pot, tmp_path / "m64.pt"))
    path = deploy(pot, tmp_path / "m32.pt", dtype="float32")
    assert read_metadata(path)["dtype"] == "float32"
    check_parity(pot, path, torch.float32, tol=2e-4)


def test_pinn_deploys(tmp_path):
    from mlpot.descriptors.gaussian_legendre import GaussianLegendre
    from mlpot.models import PINN, Potential

    torch.manual_seed(0)
    d = GaussianLegendre(ELEMENTS, r0=(2.0, 3.0, 4.0), l=(0, 1, 2), cutoff=5.0)
    head = PINN(d.n_features_per_element, hidden=(6,), cutoff=4.5, e0=[-3.0, -2.0])
    for net in head.nets.nets:  # a PINN whose networks do something
        torch.nn.init.normal_(net[-1].weight, std=0.05)
    pot = Potential(ELEMENTS, d, head).double().eval()
    check_parity(pot, deploy(pot, tmp_path / "pinn.pt"))


def test_deploy_from_model_file_and_errors(tmp_path):
    from mlpot.export import save

    pot = random_potential(ELEMENTS, types=(2, 9))
    model = save(pot, tmp_path / "model.pt")
    path = deploy(model, tmp_path / "model.lammps.pt")
    check_parity(pot, path)
    with pytest.raises(DeployError, match="not found"):
        read_metadata(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(DeployError, match="junk.pt.*not a deployed mlpot model"):
        read_metadata(tmp_path / "junk.pt")
    with pytest.raises(DeployError, match="not a deployed mlpot model"):  # an mlpot model.pt is not a deployed one
        read_metadata(model)
    with pytest.raises(DeployError, match="dtype"):
        deploy(model, tmp_path / "x.pt", dtype="float16")


def test_deploy_app(tmp_path, capsys):
    """mlpot-deploy writes the TorchScript file (default: beside the model) and n2p2's folder; a bad key is one line."""
    from mlpot.deploy_app import main
    from mlpot.export import save

    pot = random_potential(ELEMENTS, types=(2, 9))
    pot.scaler.a.fill_(1.0)  # a scaling n2p2 can express (random_potential's is set by hand)
    pot.scaler.b.zero_()
    save(pot, tmp_path / "model.pt")
    main([f"model={tmp_path}"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "model.lammps.pt")
    check_parity(pot, tmp_path / "model.lammps.pt")
    main([f"model={tmp_path / 'model.pt'}", f"out={tmp_path / 'nn'}", "format=n2p2"])
    assert (tmp_path / "nn" / "input.nn").is_file() and (tmp_path / "nn" / "scaling.data").is_file()
    with pytest.raises(SystemExit) as e:
        main([f"model={tmp_path / 'model.pt'}", "format=xyz"])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert "format" in err[0] and "torchscript, n2p2" in err[0]
    with pytest.raises(SystemExit):
        main([f"model={tmp_path / 'missing.pt'}"])
    assert "missing.pt" in capsys.readouterr().err.splitlines()[0]
