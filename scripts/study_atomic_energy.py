#!/usr/bin/env python
"""Learning curves: does training on atomic energies E_i first (SANNP, SCIENCE.md §6) reach a given
force error with fewer DFT frames than total-energy + force training?

For each number of training frames n (default 5 10 20 40 80 160; a seeded random subset of the
training split, the same subset for both modes) two models are trained with the same descriptor,
network and epoch budget:

  (a) ``ef``:    total energy + forces from the start (loss weights energy 10, forces 1);
  (b) ``sannp``: E_i alone for the first half of the epochs, then the loss=sannp weights
                 (E_i, forces, energy) — the staged schedule of mlpot/training/schedule.py.

Both are tested on the preset's test split (the last frames of each trajectory for the PWmat presets).
Descriptors and pair Jacobians are computed once for all runs. Writes ``learning_curves.json``,
``learning_curves.md`` (table) and ``learning_curves.png`` into ``--out``.

    python scripts/study_atomic_energy.py --out outputs/study_cu -- experiment=sannp_cu data.path=../shared/data/pwmat_cu
    python scripts/study_atomic_energy.py --out outputs/study_emt -- descriptor=sannp descriptor.n_three=5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from mlpot.data.frames import get_label
from mlpot.descriptors.scaling import FeatureScaler
from mlpot.models.potential import Potential
from mlpot.train import CONF_DIR, DTYPES
from mlpot.training.losses import LossWeights
from mlpot.training.module import PotentialModule
from mlpot.training.schedule import StagedSchedule

METRICS = ("test/forces_rmse", "test/energy_per_atom_rmse", "test/atomic_energies_rmse")


def reference_energies(frames, elements):
    counts = np.array([[a.get_chemical_symbols().count(e) for e in elements] for a in frames], dtype=float)
    energies = np.array([get_label(a, "energy") for a in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0.tolist()


def train_one(cfg, dm, descriptor, train_idx, mode, epochs, dtype):
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    records = {k: v for k, v in dm.records.items()}
    train_records = [records["train"][i] for i in train_idx]
    train_frames = [dm.frames["train"][i] for i in train_idx]
    with open_dict(cfg):
        cfg.model.e0 = reference_energies(train_frames, dm.elements)
    head = instantiate(cfg.model, n_features_per_element=descriptor.n_features_per_element)
    scaler = FeatureScaler(len(dm.elements), descriptor.n_features, **cfg.scaling)
    scaler.fit(torch.cat([r["G"] for r in train_records]), torch.cat([r["species"] for r in train_records]))
    potential = Potential(dm.elements, descriptor, head, scaler).to(dtype)
    sannp = LossWeights(**{k: v for k, v in cfg.loss.items() if not k.startswith("_")})
    weights = sannp if mode == "sannp" else LossWeights(energy=10.0, forces=1.0, stress=0.0, atomic_energies=0.0)
    module = PotentialModule(potential, weights, optimizer=instantiate(cfg.optim.optimizer),
                             scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
                             monitor=cfg.optim.monitor)
    callbacks = [StagedSchedule(patience=10**6, stage1_epochs=max(1, epochs // 2), verbose=False)] if mode == "sannp" else []
    loader = lambda recs, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        recs, batch_size=cfg.data.batch_size, shuffle=shuffle, collate_fn=dm_collate)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                         num_sanity_val_steps=0, inference_mode=False, gradient_clip_val=cfg.trainer.get("gradient_clip_val"))
    t0 = time.perf_counter()
    trainer.fit(module, loader(train_records, True), loader(records["val"], False))
    seconds = time.perf_counter() - t0
    trainer.test(module, loader(records["test"], False), verbose=False)  # the last epoch's model
    return {**{k: module.test_results.get(k) for k in METRICS}, "seconds": seconds}


def dm_collate(records):
    from mlpot.training.cache import collate

    return collate(records)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40, 80, 160])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", help="mlpot-train overrides (after --)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["loss=sannp", f"run_dir={args.out}", *args.overrides])
    dtype = DTYPES[cfg.dtype]
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = instantiate(cfg.data)
    dm.load()
    dm.check_labels(("energy", "forces", "atomic_energies"))
    with open_dict(cfg):
        cfg.elements = list(dm.elements)
    descriptor = instantiate(cfg.descriptor)
    t0 = time.perf_counter()
    dm.build_cache(descriptor, descriptor.cutoff, dtype)
    print(f"cache: {time.perf_counter() - t0:.0f} s; train/val/test frames "
          f"{[len(dm.frames[k]) for k in ('train', 'val', 'test')]}; load average {os.getloadavg()}", flush=True)
    n_train = len(dm.frames["train"])
    order = np.random.default_rng(args.seed).permutation(n_train)
    rows = []
    for n in args.sizes:
        if n > n_train:
            print(f"skip n={n}: only {n_train} training frames")
            continue
        idx = sorted(order[:n].tolist())
        for mode in ("ef", "sannp"):
            res = train_one(cfg.copy(), dm, descriptor, idx, mode, args.epochs, dtype)
            rows.append({"n_frames": n, "mode": mode, **res})
            print(json.dumps(rows[-1]), flush=True)
            (args.out / "learning_curves.json").write_text(json.dumps(rows, indent=1))
    write_table(rows, args.out / "learning_curves.md")
    plot(rows, args.out / "learning_curves.png")


def write_table(rows, path):
    lines = ["| frames | mode | F RMSE (eV/Å) | E/atom RMSE (meV) | E_i RMSE (meV) | s |", "|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda x, s=1.0: "-" if x is None or not math.isfinite(x) else f"{x * s:.4g}"  # noqa: E731
        lines.append(f"| {r['n_frames']} | {r['mode']} | {f(r['test/forces_rmse'])} | "
                     f"{f(r['test/energy_per_atom_rmse'], 1e3)} | {f(r['test/atomic_energies_rmse'], 1e3)} | "
                     f"{r['seconds']:.0f} |")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, label, scale in ((axes[0], "test/forces_rmse", "force RMSE (eV/Å)", 1.0),
                                  (axes[1], "test/energy_per_atom_rmse", "E/atom RMSE (meV)", 1e3),
                                  (axes[2], "test/atomic_energies_rmse", "E_i RMSE (meV)", 1e3)):
        for mode, name in (("ef", "(a) energy + forces"), ("sannp", "(b) E_i, then forces")):
            pts = [(r["n_frames"], r[key] * scale) for r in rows if r["mode"] == mode and r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), "o-", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training frames")
        ax.set_ylabel(label)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
