#!/usr/bin/env python
"""Learning curves: does training on atomic energies E_i first (SANNP, docs/science.md §6) reach a given
force error with fewer DFT frames than total-energy + force training?

For each seed (``--seeds``) the training split is put in a random order; the first n frames of that
order are the training set of size n (default n = 5 10 20 40 80 160, so the sets are nested within a
seed; different seeds draw different frames and start from different weights). For each n two models
are trained with the same descriptor, network, starting weights and optimiser budget:

  (a) ``ef``:    total energy + forces from the start (loss weights energy 10, forces 1);
  (b) ``sannp``: E_i alone for the first ``--stage1-share`` of the budget, then the loss=sannp weights
                 (E_i 10, forces 1, energy 10) — the staged schedule of mlpot/training/schedule.py with a
                 fixed switch epoch (no plateau rule).

The budget is ``--steps`` optimiser steps whatever n is, so that small training sets are trained as
long as large ones. With ``--optim lbfgs`` (the default) training is full batch (one batch of all n
frames) and a step is one L-BFGS iteration: an epoch is one ``torch.optim.LBFGS.step`` of ``max_iter``
(20) iterations, so ``--steps 400`` is 20 epochs, and the stage switch clears L-BFGS's history.
When the composed config's optimiser is already L-BFGS (the PWmat presets: ``optim=lbfgs_l2`` for Cu, with
its weight decay) ``--optim lbfgs`` uses it as it is; otherwise it adds ``optim=lbfgs optim.optimizer.lr=1``
(initial step 1). With ``--optim config``
the optimiser of the composed config is used as it is (AdamW by default) on mini-batches of
``data.batch_size``; an epoch is then ``--steps-per-epoch`` batches drawn from the training set (with
repeats when n is small), whatever n is.

The model after the last step is tested (no early stopping, no best-validation checkpoint; the
validation split is only evaluated once per epoch) on the preset's test split (the last frames of
each trajectory for the PWmat presets and for ``data.split.kind=tail``), and on its own training set
(``train/*`` columns: how far the fit went). E0 (the per-element reference energy) is the same least-squares
fit to the training subset's total energies in both modes. Descriptors and pair Jacobians are
computed once for all runs, only for the frames some run uses (the union of the seeds' training subsets,
the validation split and the test split; ``--max-val``/``--max-test`` thin the latter two evenly to keep
the cache small on large data). Writes ``learning_curves.json`` (one row per run), ``learning_curves.md``
(mean ± sample standard deviation over the seeds) and ``learning_curves.png`` into ``--out``; each row is
written as soon as its run ends, and ``--resume`` continues from them (the same ``--steps``,
``--stage1-share`` and ``--optim`` only), also with other seeds or sizes.

The runs of docs/results.md / docs/results/learning_curves_{cu,emt}.md (one thread):

    python scripts/study_atomic_energy.py --out outputs/study_cu_v2 --steps 80 --seeds 0 1 2 \\
        --sizes 5 10 20 40 80 --resume -- experiment=sannp_cu data.path=../shared/data/pwmat_cu \\
        descriptor=sannp descriptor.three_body_cutoff=4.5 optim=lbfgs
    python scripts/study_atomic_energy.py --out outputs/study_cu_v2 --steps 80 --seeds 0 \\
        --sizes 5 10 20 40 80 160 --resume -- experiment=sannp_cu data.path=../shared/data/pwmat_cu \\
        descriptor=sannp descriptor.three_body_cutoff=4.5 optim=lbfgs
    python scripts/study_atomic_energy.py --out outputs/study_emt_v2 --steps 200 --seeds 0 1 2 --max-val 20 \\
        --resume -- data.split.kind=tail
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
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from mlpot.data.frames import get_label
from mlpot.descriptors.scaling import FeatureScaler
from mlpot.models.potential import Potential
from mlpot.train import CONF_DIR, DTYPES
from mlpot.data.jacobians import collate, jacobian_records, probe_layout
from mlpot.training.losses import LossWeights
from mlpot.training.module import PotentialModule
from mlpot.training.schedule import StagedSchedule

KEYS = ("forces_rmse", "energy_per_atom_rmse", "atomic_energies_rmse")
METRICS = tuple(f"test/{k}" for k in KEYS) + tuple(f"train/{k}" for k in KEYS)
MODES = ("ef", "sannp")
EF_WEIGHTS = LossWeights(energy=10.0, forces=1.0, stress=0.0, atomic_energies=0.0)


def reference_energies(frames, elements):
    counts = np.array([[a.get_chemical_symbols().count(e) for e in elements] for a in frames], dtype=float)
    energies = np.array([get_label(a, "energy") for a in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0.tolist()


def schedule(n: int, steps: int, stage1_share: float, lbfgs: bool, max_iter: int, steps_per_epoch: int):
    """(epochs, stage-1 epochs, batch size or None) for n training frames and a budget of ``steps``."""
    per_epoch = max_iter if lbfgs else steps_per_epoch
    epochs = max(2, math.ceil(steps / per_epoch))
    stage1 = min(epochs - 1, max(1, round(stage1_share * epochs)))
    return epochs, stage1, (n if lbfgs else None)


class FixedSteps(torch.utils.data.Sampler):
    """``n_samples`` indices per epoch: consecutive random permutations of ``range(n)`` (a seeded generator)."""

    def __init__(self, n: int, n_samples: int, generator: torch.Generator):
        self.n, self.n_samples, self.generator = n, n_samples, generator

    def __iter__(self):
        out: list[int] = []
        while len(out) < self.n_samples:
            out += torch.randperm(self.n, generator=self.generator).tolist()
        return iter(out[: self.n_samples])

    def __len__(self):
        return self.n_samples


def train_one(cfg, records, train_frames, train_idx, mode, seed, args, dtype, descriptor, elements):
    """Train one model (mode ``ef`` or ``sannp``) on ``train_idx`` and test it; returns a row of metrics."""
    pl.seed_everything(seed, workers=True, verbose=False)  # same starting weights for both modes
    train_records = [records["train"][i] for i in train_idx]
    with open_dict(cfg):
        cfg.model.e0 = reference_energies([train_frames[i] for i in train_idx], elements)
    head = instantiate(cfg.model, n_features_per_element=descriptor.n_features_per_element)
    scaler = FeatureScaler(len(elements), descriptor.n_features, **cfg.scaling)
    scaler.fit(torch.cat([r["G"] for r in train_records]), torch.cat([r["species"] for r in train_records]))
    potential = Potential(elements, descriptor, head, scaler).to(dtype)
    sannp = LossWeights(**{k: v for k, v in cfg.loss.items() if not k.startswith("_")})
    weights = sannp if mode == "sannp" else EF_WEIGHTS
    factory = instantiate(cfg.optim.module) if cfg.optim.get("module") else PotentialModule
    module = factory(potential, weights, optimizer=instantiate(cfg.optim.optimizer),
                     scheduler=instantiate(cfg.optim.scheduler) if cfg.optim.get("scheduler") else None,
                     monitor=cfg.optim.monitor)
    lbfgs = not module.automatic_optimization
    n = len(train_idx)
    max_iter = int(cfg.optim.optimizer.get("max_iter", 20))
    epochs, stage1, batch = schedule(n, args.steps, args.stage1_share, lbfgs, max_iter, args.steps_per_epoch)
    callbacks = [StagedSchedule(patience=10**6, stage1_epochs=stage1, verbose=False)] if mode == "sannp" else []
    if lbfgs:
        train_loader = torch.utils.data.DataLoader(train_records, batch_size=n, shuffle=False, collate_fn=collate)
    else:
        bs = int(cfg.data.batch_size)
        sampler = FixedSteps(n, args.steps_per_epoch * bs, torch.Generator().manual_seed(seed))
        train_loader = torch.utils.data.DataLoader(train_records, batch_size=bs, sampler=sampler, collate_fn=collate)
    eval_bs = max(1, int(args.eval_batch))

    def loader(recs):
        return torch.utils.data.DataLoader(recs, batch_size=eval_bs, shuffle=False, collate_fn=collate)

    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                         num_sanity_val_steps=0, inference_mode=False,
                         gradient_clip_val=None if lbfgs else cfg.trainer.get("gradient_clip_val"))
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, loader(records["val"]))
    seconds = time.perf_counter() - t0
    row = {"n_frames": n, "mode": mode, "seed": seed, "epochs": epochs,
           "stage1_epochs": stage1 if mode == "sannp" else 0, "optimizer": type(trainer.optimizers[0]).__name__}
    if lbfgs:
        row["lbfgs_evaluations"] = getattr(module, "n_evaluations", None)
        row["lbfgs_restarts"] = getattr(module, "n_restarts", None)
    trainer.test(module, loader(train_records), verbose=False)  # the last step's model on its training set
    train_res = {k.replace("test/", "train/"): v for k, v in module.test_results.items()}
    trainer.test(module, loader(records["test"]), verbose=False)
    row.update({k: (module.test_results if k.startswith("test/") else train_res).get(k) for k in METRICS})
    row["seconds"] = seconds
    return row


def thin(frames: list, limit: int | None) -> list[int]:
    """Indices of at most ``limit`` frames spread evenly over ``frames`` (all of them when limit is None)."""
    if limit is None or len(frames) <= limit:
        return list(range(len(frames)))
    return sorted({int(round(x)) for x in np.linspace(0, len(frames) - 1, limit)})


def compose_config(overrides: list[str], optim: str, out) -> DictConfig:
    """The training config of the study: ``loss=sannp`` and the overrides; with ``optim == "lbfgs"`` the
    config's own optimiser when it is L-BFGS (a preset's ``optim=lbfgs_l2`` keeps its weight decay), else
    ``optim=lbfgs optim.optimizer.lr=1`` (also when the overrides set L-BFGS keys such as ``max_iter``,
    which do not compose over the default AdamW)."""
    pre = ["loss=sannp", f"run_dir={out}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        if optim == "lbfgs":
            try:
                cfg = compose("train", overrides=[*pre, *overrides])
                if cfg.optim.optimizer._target_ == "torch.optim.LBFGS":
                    return cfg
            except ConfigCompositionException:
                pass
            pre += ["optim=lbfgs", "optim.optimizer.lr=1.0"]
        return compose("train", overrides=[*pre, *overrides])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40, 80, 160])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="random training subsets (and starting weights)")
    ap.add_argument("--steps", type=int, default=400, help="optimiser steps (L-BFGS iterations) per run, any n")
    ap.add_argument("--stage1-share", type=float, default=0.5,
                    help="share of the epochs that mode (b) spends on E_i alone")
    ap.add_argument("--optim", choices=("lbfgs", "config"), default="lbfgs",
                    help="lbfgs: full-batch L-BFGS (the config's when it is L-BFGS, else optim=lbfgs "
                         "optim.optimizer.lr=1); "
                         "config: the config's optimiser")
    ap.add_argument("--steps-per-epoch", type=int, default=20, help="mini-batches per epoch with --optim config")
    ap.add_argument("--max-val", type=int, default=None, help="at most this many validation frames (evenly spaced)")
    ap.add_argument("--max-test", type=int, default=None, help="at most this many test frames (evenly spaced)")
    ap.add_argument("--eval-batch", type=int, default=16, help="frames per batch when testing")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of an existing learning_curves.json in --out and skip the runs it has")
    ap.add_argument("overrides", nargs="*", help="mlpot-train overrides (after --)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not 0 < args.stage1_share < 1:
        ap.error("--stage1-share must be in (0, 1)")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = compose_config(args.overrides, args.optim, args.out)
    dtype = DTYPES[cfg.dtype]
    dm = instantiate(cfg.data)
    dm.load()
    dm.check_labels(("energy", "forces", "atomic_energies"))
    elements = list(dm.elements)
    with open_dict(cfg):
        cfg.elements = elements
    n_train = len(dm.splits["train"])
    sizes = [n for n in args.sizes if n <= n_train]
    for n in sorted(set(args.sizes) - set(sizes)):
        print(f"skip n={n}: only {n_train} training frames")
    orders = {s: np.random.default_rng(s).permutation(n_train)[: max(sizes)].tolist() for s in args.seeds}
    used = sorted({i for order in orders.values() for i in order})  # only these training frames are cached
    remap = {i: k for k, i in enumerate(used)}
    store = dm.open_store()
    train_frames = [store.atoms(int(dm.splits["train"][i])) for i in used]
    frames = {"train": train_frames}
    for split, limit in (("val", args.max_val), ("test", args.max_test)):
        idx = dm.splits[split]
        frames[split] = [store.atoms(int(idx[k])) for k in thin(list(idx), limit)]
    descriptor = instantiate(cfg.descriptor)
    t0 = time.perf_counter()
    layout = probe_layout(descriptor)  # the records of a study this size fit in memory
    records = {k: jacobian_records(descriptor, v, elements, descriptor.cutoff, dtype, layout) for k, v in frames.items()}
    print(f"cache: {time.perf_counter() - t0:.0f} s; training split {n_train} frames, {len(used)} used; "
          f"val/test frames {len(frames['val'])}/{len(frames['test'])}; load average {os.getloadavg()}",
          flush=True)
    meta = {"steps": args.steps, "stage1_share": args.stage1_share, "optim": args.optim, "seeds": args.seeds,
            "overrides": args.overrides, "n_train_split": n_train, "n_val": len(frames["val"]),
            "n_test": len(frames["test"])}
    rows = []
    path = args.out / "learning_curves.json"
    if args.resume and path.exists():
        old = json.loads(path.read_text())
        budget = (args.steps, args.stage1_share, args.optim)
        if (old["meta"]["steps"], old["meta"]["stage1_share"], old["meta"]["optim"]) != budget:
            raise SystemExit(f"--resume: {path} was written with another budget ({old['meta']})")
        rows = old["rows"]
    done = {(r["seed"], r["n_frames"], r["mode"]) for r in rows}
    for seed in args.seeds:
        for n in sizes:
            idx = sorted(remap[i] for i in orders[seed][:n])
            for mode in MODES:
                if (seed, n, mode) in done:
                    continue
                rows.append(train_one(cfg.copy(), records, train_frames, idx, mode, seed, args, dtype, descriptor,
                                      elements))
                print(json.dumps(rows[-1]), flush=True)
                path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    write_table(rows, args.out / "learning_curves.md")
    plot(rows, args.out / "learning_curves.png")
    return rows


def summarize(rows):
    """{(n, mode): {metric: (mean, std, count)}} over seeds (std: sample standard deviation, 0 for one seed)."""
    out = {}
    for n in sorted({r["n_frames"] for r in rows}):
        for mode in MODES:
            group = [r for r in rows if r["n_frames"] == n and r["mode"] == mode]
            if not group:
                continue
            stats = {}
            for key in (*METRICS, "seconds"):
                vals = np.array([r[key] for r in group if r.get(key) is not None and math.isfinite(r[key])],
                                dtype=float)
                if len(vals):
                    stats[key] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, len(vals))
            out[(n, mode)] = stats
    return out


def write_table(rows, path):
    summary = summarize(rows)
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"mean ± standard deviation over {len(seeds)} seed(s) {seeds}; test set, then the final model on its "
             "own training frames", "",
             "| frames | mode | F RMSE (eV/Å) | E/atom RMSE (meV) | E_i RMSE (meV) | train F RMSE (eV/Å) | "
             "train E_i RMSE (meV) | s per run |", "|---|---|---|---|---|---|---|---|"]

    def f(stats, key, scale=1.0, digits=3):
        if key not in stats:
            return "-"
        m, s, _ = stats[key]
        return f"{m * scale:.{digits}g} ± {s * scale:.2g}"

    for (n, mode), st in summary.items():
        lines.append(f"| {n} | {mode} | {f(st, 'test/forces_rmse')} | {f(st, 'test/energy_per_atom_rmse', 1e3)} | "
                     f"{f(st, 'test/atomic_energies_rmse', 1e3)} | {f(st, 'train/forces_rmse')} | "
                     f"{f(st, 'train/atomic_energies_rmse', 1e3)} | {st['seconds'][0]:.0f} |")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(rows)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, label, scale in ((axes[0], "test/forces_rmse", "test force RMSE (eV/Å)", 1.0),
                                  (axes[1], "test/energy_per_atom_rmse", "test E/atom RMSE (meV)", 1e3),
                                  (axes[2], "test/atomic_energies_rmse", "test E_i RMSE (meV)", 1e3)):
        for mode, name in (("ef", "(a) energy + forces"), ("sannp", "(b) E_i, then forces")):
            pts = [(n, *st[key]) for (n, m), st in summary.items() if m == mode and key in st]
            if pts:
                x, mean, std, _ = zip(*pts)
                ax.errorbar(x, np.array(mean) * scale, yerr=np.array(std) * scale, fmt="o-", capsize=3, label=name)
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
