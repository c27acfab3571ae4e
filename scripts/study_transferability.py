"""Transferability study (issue 5): HDNNP vs PINN trained on the same data with groups held out.

    .venv/bin/python scripts/study_transferability.py                      # Ta and Mo, seed 0, defaults below
    .venv/bin/python scripts/study_transferability.py --systems ta --pinn-epochs 40 --hdnnp-epochs 100
    .venv/bin/python scripts/study_transferability.py --systems ta --seeds 0 1 2 --optim lbfgs --hdnnp-epochs 100 \
        --pinn-epochs 15 --set callbacks.early_stopping.patience=8    # full-batch L-BFGS, mean ± std over seeds

Ta (FitSNAP, ../shared/data/fitsnap_ta): every ``Volume_*`` file and ``Liquid`` are held out (the file
name is the group); Mo (mlearn, ../shared/data/mlearn/Mo, train.xyz + test.xyz): config_type ``Surface``.
The remaining frames are split at random 80/10/10 (train / validation / in-distribution test; the split
depends on the seed). Both models use the same preset (experiment=pinn_ta / pinn_mo: descriptor, cutoff,
loss, optimiser, early stopping on the validation loss; the best-validation weights are evaluated); the
HDNNP takes conf/model/hdnnp.yaml with the same hidden layers. ``--optim lbfgs`` replaces the preset's
AdamW by full-batch L-BFGS (``optim=lbfgs data.batch_size=100000``) for both models; ``--set`` passes
further Hydra overrides to both (``model.*`` ones reach the PINN only). One epoch of L-BFGS is
``optim.optimizer.max_iter`` iterations, so the preset's early-stopping patience, meant for AdamW epochs,
is usually lowered with it. The PINN's stage 1 (the plain BOP fit, ``--baseline-epochs`` of Adam) is the
same in both cases.

Writes under --out, per seed ``seed<k>/<system>/<model>`` (the runs), ``seed<k>/transferability.json`` and,
for Ta, ``seed<k>/ev_curve_ta.png``; over all seeds ``transferability.json`` and ``transferability.md``
(energy-per-atom and force RMSEs in distribution and held out, per seed and per held-out group, the epochs
trained (best) and the training time of stage 2; mean ± sample standard deviation over the seeds) and
``ev_curve_ta.png``: E(V) of bcc Ta from 0.7 to 1.4 V0 for both models (every seed) against the DFT points
of ``Volume_BCC`` (held out), with the RMSE against those points (all, compressed, expanded) and the error
at each point in the tables. ``--evaluate-only`` skips training and evaluates the models of an earlier call
with the same ``--out`` and options again. Prints the load average (timings on a shared machine).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlpot.data.datamodule import AtomsDataModule  # noqa: E402
from mlpot.data.frames import get_label  # noqa: E402
from mlpot.data.graph import atoms_to_graph  # noqa: E402
from mlpot.data.splits import split_table  # noqa: E402
from mlpot.export import load  # noqa: E402
from mlpot.train import CONF_DIR, run  # noqa: E402

SYSTEMS = {
    "ta": {"experiment": "pinn_ta", "path": ROOT.parent / "shared" / "data" / "fitsnap_ta", "files": None,
           "held_out": ["Volume_*", "Liquid"]},
    "mo": {"experiment": "pinn_mo", "path": ROOT.parent / "shared" / "data" / "mlearn" / "Mo",
           "files": ["train.xyz", "test.xyz"], "held_out": ["Surface"]},
}


class HeldOutData(AtomsDataModule):
    """Frames of whole groups (config_type, else the file name) held out; the rest split at random.

    The splits get a fourth entry ``heldout``."""

    def __init__(self, held_out=(), files=None, **kw):
        kw.pop("train_file", None), kw.pop("test_file", None)
        super().__init__(**kw)
        self.held_out, self.files = list(held_out), files

    def source_files(self):
        files = [self.path / f for f in self.files] if self.files else sorted(self.path.glob(self.pattern))
        return files, str(self.path)

    def make_splits(self, store):
        meta = store.meta()
        types = [store.config_types[c] if c >= 0 else Path(store.sources[s]["path"]).stem
                 for c, s in zip(meta["config_type"].tolist(), meta["source"].tolist())]
        out = [any(fnmatch.fnmatch(str(t), p) for p in self.held_out) for t in types]
        rest = [k for k, o in enumerate(out) if not o]
        split = split_table(len(rest), kind="random", fractions=[0.8, 0.1, 0.1], seed=self.split.get("seed", 0),
                            source=str(self.path))
        splits = {k: [rest[i] for i in split[k]] for k in ("train", "val", "test")}
        splits["heldout"] = [k for k, o in enumerate(out) if o]
        return splits

    def frames(self) -> dict:
        """Each split's frames as ase.Atoms, with the file name as config_type where a frame has none."""
        out = {k: self.atoms(k) for k in self.load()}
        for frames in out.values():
            for f in frames:
                f.info.setdefault("config_type", Path(str(f.info.get("mlpot_source"))).stem)
        return out


OPTIM = {"preset": [], "lbfgs": ["optim=lbfgs", "data.batch_size=100000"]}


def make_config(system: str, model: str, out: Path, args, seed: int = 0) -> object:
    spec = SYSTEMS[system]
    overrides = [f"experiment={spec['experiment']}", f"run_dir={out / system / model}", f"seed={seed}",
                 "trainer.enable_progress_bar=false", *OPTIM[args.optim], *args.set]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.data._target_ = "__main__.HeldOutData"
        cfg.data.held_out = spec["held_out"]
        cfg.data.files = spec["files"]
        cfg.data.path = str(spec["path"])
        if model == "hdnnp":
            hidden = list(cfg.model.hidden)
            cfg.model = OmegaConf.load(ROOT / "conf" / "model" / "hdnnp.yaml")
            cfg.model.hidden = hidden
            cfg.trainer.max_epochs = args.hdnnp_epochs
        else:
            cfg.model.baseline.epochs = args.baseline_epochs
            cfg.trainer.max_epochs = args.pinn_epochs
    return cfg


def rmse(pot, frames, chunk: int = 8) -> dict:
    de, df = [], []
    for s in range(0, len(frames), chunk):
        part = frames[s : s + chunk]
        g = atoms_to_graph(part, pot.elements, pot.cutoff, dtype=pot.dtype)
        out = pot(g, forces=True)
        e = out["energy"].detach().double().numpy()
        for k, a in enumerate(part):
            de.append((e[k] - get_label(a, "energy")) / len(a))
        f = out["forces"].detach().double().numpy()
        ref = np.concatenate([get_label(a, "forces") for a in part])
        df.append((f - ref).ravel())
    return {"energy_per_atom_rmse": float(np.sqrt(np.mean(np.square(de)))),
            "forces_rmse": float(np.sqrt(np.mean(np.square(np.concatenate(df))))), "frames": len(frames)}


def ev_curve(pots: dict, frames) -> dict:
    """E/atom of bcc Ta (2-atom cubic cell) from 0.7 to 1.4 V0, and its RMSE against the DFT Volume_BCC points."""
    from ase.build import bulk

    dft = sorted((a.get_volume() / len(a), get_label(a, "energy") / len(a)) for a in frames
                 if "Volume_BCC" in str(a.info.get("mlpot_source")))
    v_dft, e_dft = np.array(dft).T
    v0 = float(v_dft[np.argmin(e_dft)])
    vols = np.linspace(0.7, 1.4, 36) * v0
    sel = (v_dft >= 0.7 * v0 - 1e-9) & (v_dft <= 1.4 * v0 + 1e-9)

    def energies(pot, volumes):
        return [float(pot.predict(bulk("Ta", "bcc", a=(2 * v) ** (1 / 3), cubic=True), forces=False)["energy"][0]) / 2
                for v in volumes]

    curves = {name: energies(pot, vols) for name, pot in pots.items()}
    v_sel, e_sel = v_dft[sel], e_dft[sel]
    at_dft = {name: energies(pot, v_sel) for name, pot in pots.items()}  # model at the DFT volumes in range
    err = {name: np.array(e) - e_sel for name, e in at_dft.items()}

    def rms(x):
        return float(np.sqrt(np.mean(x**2))) if x.size else float("nan")

    return {"v0": v0, "volumes": (vols / v0).tolist(), "curves": curves, "dft": [v_sel.tolist(), e_sel.tolist()],
            "at_dft": at_dft, "rmse_vs_dft_eV_per_atom": {name: rms(x) for name, x in err.items()},
            "rmse_vs_dft_compressed": {name: rms(x[v_sel < v0 - 1e-9]) for name, x in err.items()},
            "rmse_vs_dft_expanded": {name: rms(x[v_sel > v0 + 1e-9]) for name, x in err.items()}}


def plot_ev(evs: list, seeds: list, path: Path) -> None:
    """E(V) of every seed's models (one colour per model) against the DFT points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v0 = evs[0]["v0"]
    v_dft, e_dft = (np.array(x) for x in evs[0]["dft"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(v_dft / v0, e_dft, "ko", label="DFT (Volume_BCC, held out)", zorder=3)
    for name, colour in (("hdnnp", "C0"), ("pinn", "C3")):
        for k, (ev, seed) in enumerate(zip(evs, seeds)):
            rms = ev["rmse_vs_dft_eV_per_atom"][name]
            ax.plot(np.array(ev["volumes"]) * ev["v0"] / v0, ev["curves"][name], color=colour, alpha=0.8,
                    lw=1.2, ls=("-", "--", ":", "-.")[k % 4], label=f"{name.upper()} seed {seed} (RMSE {rms:.3f})")
    ax.set_xlabel("V / V0")
    ax.set_ylabel("E (eV/atom)")
    ax.set_title(f"bcc Ta, V0 = {v0:.2f} Å³/atom")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run_seed(args, seed: int) -> dict:
    """Train and evaluate both models on every system for one seed; writes ``seed<k>/transferability.json``."""
    out = args.out / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    results = {"seed": seed, "load_average_start": os.getloadavg()}
    for system in args.systems:
        res, pots = {}, {}
        for model in ("hdnnp", "pinn"):
            cfg = make_config(system, model, out, args, seed)
            t0 = time.perf_counter()
            if args.evaluate_only:  # the run of an earlier call with the same --out and options
                metrics = json.loads((out / system / model / "metrics.json").read_text())
            else:
                metrics = run(cfg)
            seconds = None if args.evaluate_only else time.perf_counter() - t0
            history = json.loads((out / system / model / "history.json").read_text())
            best = min(history, key=lambda row: row["val/loss"]) if history else {}
            pot = load(out / system / model / "model.pt")
            dm = HeldOutData(**{k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
                                if k != "_target_"})
            frames = dm.frames()
            groups = sorted({str(f.info["config_type"]) for f in frames["heldout"]})
            res[model] = {"in_distribution": rmse(pot, frames["test"]), "held_out": rmse(pot, frames["heldout"]),
                          "held_out_groups": {g: rmse(pot, [f for f in frames["heldout"] if f.info["config_type"] == g])
                                              for g in groups},
                          "seconds": seconds, "train_seconds": metrics.get("train_seconds"),
                          "epochs": len(history), "max_epochs": int(cfg.trainer.max_epochs),
                          "best_epoch": best.get("epoch"), "best_val_loss": best.get("val/loss"),
                          "stopped_early": len(history) < int(cfg.trainer.max_epochs),
                          "frames": {k: len(v) for k, v in frames.items()}}
            pots[model] = pot
            print(f"seed {seed}", system, model, json.dumps(res[model]), flush=True)
        if system == "ta":
            res["ev_curve"] = ev_curve(pots, frames["heldout"])
            plot_ev([res["ev_curve"]], [seed], out / "ev_curve_ta.png")
        results[system] = res
    results["load_average_end"] = os.getloadavg()
    (out / "transferability.json").write_text(json.dumps(results, indent=1))
    return results


def mean_std(values, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` (sample standard deviation, ddof 1) of ``values`` × ``scale``; the value alone for one."""
    v = scale * np.asarray(values, dtype=float)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(per_seed: list, systems: list) -> str:
    """The markdown tables over seeds (mean ± std)."""
    seeds = [r["seed"] for r in per_seed]
    models = ("hdnnp", "pinn")

    def col(system, model, *keys):
        out = []
        for r in per_seed:
            x = r[system][model]
            for k in keys:
                x = x[k]
            out.append(x)
        return out

    n = len(seeds)
    head = (f"Seeds {', '.join(map(str, seeds))} (mean ± std over {n} seeds; the random split changes with the seed; "
            "std: sample standard deviation).") if n > 1 else f"Seed {seeds[0]} (one run)."
    lines = [head, "",
             "| system | model | E in-dist (meV/atom) | E held out (meV/atom) | F in-dist (eV/Å) | F held out (eV/Å) "
             "| epochs (best) | training (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for system in systems:
        for model in models:
            epochs = ", ".join(f"{e} ({b})" for e, b in
                               zip(col(system, model, "epochs"), col(system, model, "best_epoch")))
            lines.append(
                f"| {system} | {model} "
                f"| {mean_std(col(system, model, 'in_distribution', 'energy_per_atom_rmse'), 1e3)} "
                f"| {mean_std(col(system, model, 'held_out', 'energy_per_atom_rmse'), 1e3)} "
                f"| {mean_std(col(system, model, 'in_distribution', 'forces_rmse'), 1, 3)} "
                f"| {mean_std(col(system, model, 'held_out', 'forces_rmse'), 1, 3)} | {epochs} "
                f"| {mean_std(col(system, model, 'train_seconds'), 1, 0)} |")
    lines += ["", "Per seed (E in meV/atom, F in eV/Å; in distribution / held out):", "",
              "| system | model | " + " | ".join(f"seed {k}" for k in seeds) + " |", "|---|---|" + "---|" * n]
    for system in systems:
        for model in models:
            cells = []
            for r in per_seed:
                x = r[system][model]
                cells.append(f"E {1e3 * x['in_distribution']['energy_per_atom_rmse']:.1f} / "
                             f"{1e3 * x['held_out']['energy_per_atom_rmse']:.1f}, "
                             f"F {x['in_distribution']['forces_rmse']:.3f} / {x['held_out']['forces_rmse']:.3f}")
            lines.append(f"| {system} | {model} | " + " | ".join(cells) + " |")
    lines += ["", "| system | model | held-out group | frames | E (meV/atom) | F (eV/Å) |",
              "|---|---|---|---|---|---|"]
    for system in systems:
        for model in models:
            for g in per_seed[0][system][model]["held_out_groups"]:
                rows = [r[system][model]["held_out_groups"][g] for r in per_seed]
                lines.append(f"| {system} | {model} | {g} | {rows[0]['frames']} "
                             f"| {mean_std([x['energy_per_atom_rmse'] for x in rows], 1e3)} "
                             f"| {mean_std([x['forces_rmse'] for x in rows], 1, 3)} |")
    if "ta" in systems:
        evs = [r["ta"]["ev_curve"] for r in per_seed]
        lines += ["", "bcc Ta E(V) against the held-out DFT points (Volume_BCC) from 0.7 to 1.4 V0, "
                  "RMSE (eV/atom):", "",
                  "| model | all points | V < V0 | V > V0 | per seed (all points) |", "|---|---|---|---|---|"]
        for m in models:
            lines.append(f"| {m} | {mean_std([ev['rmse_vs_dft_eV_per_atom'][m] for ev in evs], 1, 3)} "
                         f"| {mean_std([ev['rmse_vs_dft_compressed'][m] for ev in evs], 1, 3)} "
                         f"| {mean_std([ev['rmse_vs_dft_expanded'][m] for ev in evs], 1, 3)} | "
                         + ", ".join(f"{ev['rmse_vs_dft_eV_per_atom'][m]:.3f}" for ev in evs) + " |")
        v_dft, e_dft = (np.array(x) for x in evs[0]["dft"])
        lines += ["", "Error E_model − E_DFT (eV/atom) at each DFT volume, mean ± std over seeds:", "",
                  "| V/V0 | E_DFT (eV/atom) | " + " | ".join(m.upper() for m in models) + " |",
                  "|---|---|" + "---|" * len(models)]
        for k, (v, e) in enumerate(zip(v_dft, e_dft)):
            lines.append(f"| {v / evs[0]['v0']:.3f} | {e:.3f} | " + " | ".join(
                mean_std([ev["at_dft"][m][k] - e for ev in evs], 1, 3) for m in models) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=["ta", "mo"], choices=list(SYSTEMS))
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "transferability")
    ap.add_argument("--hdnnp-epochs", type=int, default=150)
    ap.add_argument("--pinn-epochs", type=int, default=60)
    ap.add_argument("--baseline-epochs", type=int, default=20)
    ap.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="one run per seed (split and weights)")
    ap.add_argument("--optim", choices=list(OPTIM), default="preset",
                    help="preset: the preset's AdamW; lbfgs: full-batch L-BFGS (optim=lbfgs data.batch_size=100000)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further Hydra overrides for both models")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for these sizes)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="no training: evaluate the models of an earlier call with the same --out and options")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {"load_average_start": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()},
               "seeds": [run_seed(args, seed) for seed in args.seeds]}
    results["load_average_end"] = os.getloadavg()
    results["wall_seconds"] = time.perf_counter() - t0
    (args.out / "transferability.json").write_text(json.dumps(results, indent=1))
    if "ta" in args.systems:
        plot_ev([r["ta"]["ev_curve"] for r in results["seeds"]], args.seeds, args.out / "ev_curve_ta.png")
    text = table(results["seeds"], args.systems)
    if args.evaluate_only:
        text += "\n\nevaluated the saved models again (--evaluate-only); training (s) is from each run's metrics.json"
    else:
        text += (f"\n\nwall {results['wall_seconds']:.0f} s; load average: start {results['load_average_start']}, "
                 f"end {results['load_average_end']}")
    (args.out / "transferability.md").write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
