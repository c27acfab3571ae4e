"""Sweeps beyond one machine: Hydra's Optuna sweeper (the objective is the validation loss mlpot-train returns)
over the submitit launcher (submitit_local here; submitit_slurm on a cluster, same code path), and the shipped
presets (docs/sweeps.md)."""

from __future__ import annotations

import json

import pytest
import yaml
from omegaconf import OmegaConf

from mlpot.cli import CONF_DIR
from tests.test_train import COMMON, _cli


def test_presets_compose_and_name_real_keys():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=au_study", "hydra/sweeper=au_study_optuna",
                                          "hydra/launcher=slurm"], return_hydra_config=True)
    sweeper, launcher = cfg.hydra.sweeper, cfg.hydra.launcher
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == 1
    for key in sweeper.params:  # every searched key exists in the Au study's config
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
    assert cfg.objective == "val/loss"


def test_optuna_search_of_two_trials_as_two_submitit_jobs(tiny_data, tmp_path):
    sweep = tmp_path / "search"
    res = _cli(["-m", "hydra/sweeper=optuna", "hydra/launcher=submitit_local", "hydra.sweeper.n_trials=2",
                "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=0", "hydra.launcher.timeout_min=10",
                "optim.optimizer.lr=tag(log, interval(0.001, 0.01))", f"data.path={tiny_data}",
                "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", *COMMON], cwd=tmp_path)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    runs = sorted(sweep.glob("[0-9]*/metrics.json"))
    assert len(runs) == 2
    losses = [json.loads(p.read_text())["val/loss"] for p in runs]
    lrs = [yaml.safe_load((p.parent / ".hydra" / "config.yaml").read_text())["optim"]["optimizer"]["lr"] for p in runs]
    assert all(0.001 <= lr <= 0.01 for lr in lrs) and lrs[0] != lrs[1]  # Optuna chose the learning rates
    assert len(list((sweep / ".submitit").glob("*/*_0_result.pkl"))) == 2  # each trial a submitit job
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(losses))  # the objective is the run's validation loss
    assert best["best_params"]["optim.optimizer.lr"] == pytest.approx(lrs[losses.index(min(losses))])
