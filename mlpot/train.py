"""``mlpot-train``: the Hydra app that trains a potential (no science here; see mlpot/training).

    mlpot-train                                   # built-in EMT Cu data, default model
    mlpot-train experiment=mlearn data.path=../shared/data/mlearn/Mo
    mlpot-train -m descriptor.cutoff=5,6 seed=1,2,3
    mlpot-train committee.size=4                  # four members (seeds 0-3), one committee model.pt
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mlpot.cli import CONF_DIR, app, check_types
from mlpot.data.datamodule import is_builtin
from mlpot.files import write_text
from mlpot.descriptors.scaling import FeatureScaler
from mlpot.models.potential import Potential
from mlpot.training.module import PotentialModule

log = logging.getLogger("mlpot.train")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def if_builtin_data(path, on_builtin, otherwise):
    """The config resolver ``${mlpot.if_builtin_data:${data.path},A,B}``: ``A`` when the run trains on the
    built-in EMT Cu data (``data.path`` null, as the data module reads it), else ``B``. Used by
    ``conf/loss/energy_forces.yaml`` so that the stress term is on for the built-in data (stress on every
    frame) and off for other data, which may have no stress labels."""
    return on_builtin if is_builtin(path) else otherwise


if not OmegaConf.has_resolver("mlpot.if_builtin_data"):
    OmegaConf.register_new_resolver("mlpot.if_builtin_data", if_builtin_data)


def _run_dir(cfg) -> Path:
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    return Path(HydraConfig.get().runtime.output_dir)


def _processes_per_node(cfg) -> int:
    """Processes this job runs on this machine (DDP on CPU: one per device)."""
    devices = cfg.trainer.get("devices", 1)
    if _accelerator(cfg) == "cpu" and isinstance(devices, int) and devices > 1:
        return devices
    return 1


def _accelerator(cfg) -> str:
    acc = str(cfg.trainer.get("accelerator", "cpu"))
    if acc == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return acc


def build(cfg: DictConfig):
    """Data module, potential (with training statistics) and LightningModule from a composed config."""
    from mlpot.data.datamodule import choose_force_path
    from mlpot.ops import set_scatter_backend

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {cfg.dtype!r}")
    dtype = DTYPES[cfg.dtype]
    training = cfg.get("training") or {}
    set_scatter_backend(training.get("scatter", "native"))
    dm = instantiate(cfg.data)
    dm.load()
    weights = instantiate(cfg.loss)
    dm.check_labels(weights.needs())
    dm.check()
    with open_dict(cfg):
        cfg.elements = list(dm.elements)
    start = None
    if cfg.get("init_from"):  # fine-tuning: the model's elements, descriptor, scaling and weights; new data
        from mlpot.training.checkpoints import init_from_model

        start = init_from_model(cfg.init_from, dm.elements).to(dtype)
        dm.elements = list(start.elements)
        with open_dict(cfg):
            cfg.elements = list(start.elements)
        log.info("init_from %s: elements %s, %s descriptor and %s head from the model (descriptor= and model= are "
                 "not used)", cfg.init_from, start.elements, type(start.descriptor).__name__, type(start.head).__name__)
    descriptor = start.descriptor if start is not None else instantiate(cfg.descriptor)
    kind, why = choose_force_path(dm, descriptor, dtype, training.get("forces", "auto"), _accelerator(cfg),
                                  training.get("jacobian_budget_gb"))
    log.info("forces and stress: %s path (%s)", kind, why)
    dm.prepare(descriptor, dtype, kind)
    if start is not None:
        potential = start
    else:
        with open_dict(cfg):  # training-split statistics, computed once, injected into the config
            if cfg.model.get("e0") is None:
                cfg.model.e0 = dm.reference_energies()
                if weights.atomic_energies > 0:  # per-atom labels (SANNP): E0 = each element's mean training E_i
                    cfg.model.e0 = dm.mean_atomic_energies(cfg.model.e0)
        head = instantiate(cfg.model, n_features_per_element=descriptor.n_features_per_element)
        scaler = FeatureScaler(len(dm.elements), descriptor.n_features, **cfg.scaling)
        scaler.set_stats(*dm.scaling_statistics(descriptor, dtype).result())
        potential = Potential(dm.elements, descriptor, head, scaler, metadata={"units": {"energy": "eV", "length": "Å"}})
        potential = potential.to(dtype)
    head = potential.head
    if start is None and getattr(head, "needs_geometry", False) and hasattr(head, "u0"):  # PINN stage 1: fit p0
        from mlpot.training.baseline import fit_baseline

        fit_baseline(potential, lambda shuffle, bs: dm.loader("train", shuffle, bs, rank=0, world=1), weights,
                     seed=cfg.seed, **head.baseline)
    module_factory = instantiate(cfg.optim.module) if cfg.optim.get("module") else PotentialModule  # e.g. EKFModule
    module = module_factory(potential, weights, optimizer=instantiate(cfg.optim.optimizer),
                             scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
                             monitor=cfg.optim.monitor)
    dm.full_split = bool(getattr(module, "full_split", False))
    return dm, potential, module


def run(cfg: DictConfig) -> dict:
    """Train, test, export; returns the metrics written to metrics.json."""
    run_dir = _run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    dm, potential, module = build(cfg)
    loggers = [instantiate(lg) for lg in cfg.logger.values()] if cfg.get("logger") else []
    callbacks = [instantiate(cb) for cb in cfg.callbacks.values()] if cfg.get("callbacks") else []
    extra = {} if module.automatic_optimization else {"gradient_clip_val": None}  # manual optimisation: no clipping
    if not sys.stderr.isatty():  # a log file or a pipe: no progress bar (its carriage returns litter the file)
        extra["enable_progress_bar"] = False
    from mlpot.training.checkpoints import AtomicCheckpointIO, check_checkpoint

    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, default_root_dir=str(run_dir),
                          plugins=[AtomicCheckpointIO()], **extra)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for lg in loggers:  # dashboards compare runs by their hyperparameters: the whole resolved config
        lg.log_hyperparams(resolved)
    if trainer.is_global_zero:
        write_text(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    if cfg.get("ckpt_path"):
        check_checkpoint(cfg.ckpt_path, module)
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    train_seconds = module.train_seconds()
    has_best = any(getattr(cb, "best_model_path", "") for cb in trainer.checkpoint_callbacks)
    trainer.test(module, datamodule=dm, ckpt_path="best" if has_best else None, verbose=False)
    metrics = {**module.test_results, "train_seconds": train_seconds, "epochs": trainer.current_epoch}
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB → GB (Linux)
    log.info("process %d of %d: peak resident memory %.2f GB", trainer.global_rank, trainer.world_size, peak)
    metrics["peak_rss_gb"] = peak
    if module.history:
        last = module.history[-1]
        metrics.update({k: v for k, v in last.items() if k.startswith(("train/", "val/"))})
        if "stage" in last:  # the SANNP schedule's stage (mlpot/training/schedule.py)
            metrics["stage"] = last["stage"]
    if trainer.is_global_zero:
        _write_artefacts(cfg, run_dir, dm, module, metrics)
        print(summary(metrics, run_dir, cfg.get("export", True)), flush=True)
    for lg in loggers:  # end each W&B run with its job: the jobs of a sweep (-m, one process) get a run each
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()
    return metrics


COMMITTEE_SPLITS = ("same", "different")


def run_committee(cfg: DictConfig) -> dict:
    """Train ``committee.size`` members one after another (seed + k, in ``run_dir/members/k``) and write their
    committee to ``run_dir/model.pt``; ``metrics.json`` holds the committee mean's test errors and spread (on
    the test split of ``seed`` with ``committee.split=same``) and each member's metrics."""
    from mlpot.errors import ConfigError
    from mlpot.export import save_committee

    size, split = cfg.committee.size, str(cfg.committee.get("split", "same"))
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError("committee.size", f"must be an integer >= 1, got {size!r}")
    if split not in COMMITTEE_SPLITS:
        raise ConfigError("committee.split", f"must be one of {', '.join(COMMITTEE_SPLITS)}, got {split!r}")
    if not cfg.get("export", True):
        raise ConfigError("export", "committee.size > 1 needs export=true (the committee is built from the members' "
                                    "model.pt)")
    run_dir = _run_dir(cfg)
    files, member_metrics = [], []
    for k in range(size):
        member = cfg.copy()
        with open_dict(member):
            member.seed = int(cfg.seed) + k
            member.run_dir = str(run_dir / "members" / str(k))
            member.committee.size = 1
            if split == "same" and OmegaConf.select(member, "data.split.seed", default=None) is not None:
                member.data.split.seed = int(cfg.seed)
        log.info("committee member %d of %d: seed %d, run folder %s", k + 1, size, member.seed, member.run_dir)
        member_metrics.append(run(member))
        files.append(Path(member.run_dir) / "model.pt")
    path = save_committee(files, run_dir / "model.pt", extra={"config": OmegaConf.to_container(cfg, resolve=True)})
    metrics = {"committee/size": size, "members": member_metrics}
    if split == "same":
        metrics.update(committee_test_metrics(cfg, path))
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
    lines = [f"committee of {size}: {path}"]
    if "test/forces_rmse" in metrics:
        lines.append(f"test (committee mean): forces RMSE {metrics['test/forces_rmse']:.4g} eV/Å, energy RMSE "
                     f"{metrics['test/energy_per_atom_rmse'] * 1e3:.4g} meV/atom; per-atom force spread mean "
                     f"{metrics['test/mean_force_std']:.4g} eV/Å, Spearman ρ(spread, error) "
                     f"{metrics['test/force_std_spearman']:.3f}")
    print("\n".join(lines), flush=True)
    return metrics


def committee_test_metrics(cfg: DictConfig, model_path: Path) -> dict:
    """Test-split errors of the committee mean and how its per-atom force spread ranks the errors."""
    from mlpot.calculator import MLPotCalculator
    from mlpot.evaluate.uncertainty import calibration, committee_errors

    dm = instantiate(cfg.data)
    dm.load()
    frames = dm.atoms("test")
    if not frames:
        return {}
    res = committee_errors(MLPotCalculator(model_path), frames)
    cal = calibration(res["forces_std"], res["force_error"])
    out = {"test/forces_rmse": float(np.sqrt(np.mean(res["force_error"] ** 2) / 3)),
           "test/mean_force_std": cal["mean_spread"], "test/force_std_spearman": cal["spearman"]}
    if res["energy_error_per_atom"].size:
        out["test/energy_per_atom_rmse"] = float(np.sqrt(np.mean(res["energy_error_per_atom"] ** 2)))
        out["test/energy_per_atom_std_mean"] = float(np.mean(res["energy_std_per_atom"]))
    return out


def summary(metrics: dict, run_dir: Path, exported: bool) -> str:
    """The few lines printed at the end of a run: test errors and where the model and the run folder are."""
    parts = []
    for key, unit, scale in (("energy_per_atom", "meV/atom", 1e3), ("forces", "eV/Å", 1.0), ("stress", "meV/Å³", 1e3),
                             ("atomic_energies", "meV", 1e3)):
        if f"test/{key}_rmse" in metrics:
            parts.append(f"{key} RMSE {metrics[f'test/{key}_rmse'] * scale:.4g} {unit} "
                         f"(MAE {metrics[f'test/{key}_mae'] * scale:.4g})")
    lines = ["test: " + ("; ".join(parts) if parts else "no labelled test frames")]
    if exported:
        lines.append(f"model: {run_dir / 'model.pt'}")
    lines.append(f"run folder: {run_dir} ({metrics.get('epochs', 0):.0f} epochs, {metrics.get('train_seconds', 0):.0f} s)")
    return "\n".join(lines)


def _test_config_types(dm) -> list | None:
    """The config_type of each test frame, in the test loader's order (None where a frame has none)."""
    try:
        store = dm.open_store()
        ids = store.meta()["config_type"][dm.splits["test"]]
        return [store.config_types[int(i)] if i >= 0 else None for i in ids]
    except (AttributeError, KeyError, IndexError):  # a data module without a frame store
        return None


def _write_artefacts(cfg, run_dir: Path, dm, module, metrics: dict) -> None:
    """The model first (nothing after it can lose it), then metrics and history, then the plots; every file is
    written atomically, and a plot that fails (a full disk, a broken font cache) is a warning, not a lost run."""
    from mlpot.export import save
    from mlpot.training.report import parity_data, plot_learning_curves, plot_parity, write_metrics

    potential = module.potential.eval()
    if cfg.get("export", True):
        save(potential, run_dir / "model.pt", extra={"config": OmegaConf.to_container(cfg, resolve=True),
                                                       "metrics": metrics})
    write_metrics(run_dir / "metrics.json", {k: v for k, v in metrics.items() if not k.endswith("_count")})
    write_text(run_dir / "history.json", json.dumps(module.history, indent=1))
    try:
        plot_parity(parity_data(potential, dm.loader("test", rank=0, world=1)), run_dir, groups=_test_config_types(dm))
        plot_learning_curves(module.history, run_dir)
    except OSError as exc:
        log.warning("plots not written (%s: %s); model.pt, metrics.json and history.json are", type(exc).__name__, exc)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@app("mlpot-train")
def main(cfg: DictConfig) -> float | None:
    from mlpot.system import setup_process

    check_types(cfg, CONF_DIR, "train", HydraConfig.get().runtime.choices)  # before any data is read
    setup_process(cfg.get("threads"), _processes_per_node(cfg))
    size = cfg.get("committee", {}).get("size", 1)
    metrics = run_committee(cfg) if size != 1 else run(cfg)
    return metrics.get(cfg.get("objective", "val/loss"))


if __name__ == "__main__":
    main()
