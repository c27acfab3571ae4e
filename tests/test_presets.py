"""Descriptor presets in conf/ compose and build."""

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from mlpot.descriptors import ACSF, au_study

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_au_study_has_26_functions():
    d = au_study(["Au"])
    assert d.n_features == 26
    assert sum(not f.angular for f in d.functions) == 8
    assert {f.type for f in d.functions if f.angular} == {9}
    assert {f.cutoff for f in d.functions} == {"poly2"}


def test_au_study_two_elements():
    d = au_study(["Cu", "Au"])
    # per central element: 8 radial x 2 neighbours + 18 angular x 3 neighbour pairs
    assert d.n_features_per_element == [8 * 2 + 18 * 3] * 2


def _build(name, elements):
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "descriptor" / f"{name}.yaml"), {"elements": elements, "cutoff": 6.0})
    root = OmegaConf.create({"elements": elements, "cutoff": 6.0, "descriptor": cfg})
    return instantiate(root.descriptor)


def test_conf_presets_instantiate():
    au = _build("acsf_au", ["Au"])
    assert isinstance(au, ACSF) and au.n_features == 26
    grid = _build("acsf", ["Si", "O"])
    assert isinstance(grid, ACSF) and grid.cutoff == 6.0


def test_mlearn_preset_swaps_its_whole_descriptor():
    """experiment=mlearn brings n_max 8 in its own descriptor file, so that descriptor=<other> composes."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        default = compose("train", overrides=["experiment=mlearn", "data.path=x"])
        other = compose("train", overrides=["experiment=mlearn", "data.path=x", "descriptor=n2p2", "descriptor.path=y"])
        bessel_only = compose("train", overrides=["experiment=mlearn", "data.path=x", "descriptor=bessel_coupled"])
    bessel, acsf = default.descriptor.parts
    assert bessel.n_max == 8 and bessel.coupled and default.cutoff == 5.5
    assert len(acsf.radial[0].eta) * len(acsf.radial[0].rs) == 15 and not acsf.angular
    assert other.descriptor._target_.endswith("acsf_from_input_nn") and "parts" not in other.descriptor
    assert bessel_only.descriptor.n_max == 8 and "parts" not in bessel_only.descriptor  # the previous preset's


def test_default_loss_has_stress_on_builtin_data_only():
    """The default loss fits stress (weight 100) on the built-in EMT data only: other data may lack stress."""
    from hydra import compose, initialize_config_dir

    from mlpot.train import CONF_DIR  # registers the mlpot.if_builtin_data resolver

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        default = compose("train")
        named = compose("train", overrides=["data.path=builtin"])
        other = compose("train", overrides=["data.path=x"])
        xyz = compose("train", overrides=["data=xyz", "data.path=x"])
        au = compose("train", overrides=["experiment=au_study"])
        explicit = compose("train", overrides=["loss.stress=3"])
    assert default.loss.stress == 100.0 and named.loss.stress == 100.0
    assert other.loss.stress == 0.0 and xyz.loss.stress == 0.0
    assert au.loss.stress == 0.0  # the Kalman-filter study stays energy + forces, as n2p2
    assert explicit.loss.stress == 3
