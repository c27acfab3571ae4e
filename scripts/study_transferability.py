"""Transferability study (issue 5): HDNNP vs PINN trained on the same data with groups held out.

    .venv/bin/python scripts/study_transferability.py                      # Ta and Mo, defaults below
    .venv/bin/python scripts/study_transferability.py --systems ta --pinn-epochs 40 --hdnnp-epochs 100

Ta (FitSNAP, ../shared/data/fitsnap_ta): every ``Volume_*`` file and ``Liquid`` are held out (the file
name is the group); Mo (mlearn, ../shared/data/mlearn/Mo, train.xyz + test.xyz): config_type ``Surface``.
The remaining frames are split at random 80/10/10 (train / validation / in-distribution test). Both
models use the same preset (experiment=pinn_ta / pinn_mo: descriptor, cutoff, loss, optimiser); the
HDNNP takes conf/model/hdnnp.yaml with the same hidden layers. Writes under --out: the runs, a table
(``transferability.md``, ``transferability.json``) of energy-per-atom and force RMSEs in distribution
and held out, and for Ta ``ev_curve_ta.png``: E(V) of bcc Ta from 0.7 to 1.4 V0 for both models against
the DFT points of ``Volume_BCC`` (held out). Prints the load average (timings on a shared machine).
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
from mlpot.data.splits import split_frames  # noqa: E402
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

    ``frames`` gets a fourth entry ``heldout`` (cached like the others)."""

    def __init__(self, held_out=(), files=None, **kw):
        kw.pop("train_file", None), kw.pop("test_file", None)
        super().__init__(**kw)
        self.held_out, self.files = list(held_out), files

    def load(self):
        if self.frames:
            return self.frames
        files = [self.path / f for f in self.files] if self.files else sorted(self.path.glob(self.pattern))
        frames = self._read(files)
        for f in frames:
            f.info.setdefault("config_type", Path(str(f.info.get("mlpot_source"))).stem)
        out = [any(fnmatch.fnmatch(str(f.info["config_type"]), p) for p in self.held_out) for f in frames]
        rest = [f for f, o in zip(frames, out) if not o]
        split = split_frames(rest, source=str(self.path), kind="random", fractions=[0.8, 0.1, 0.1],
                             seed=self.split.get("seed", 0))
        self.frames = {k: [rest[i] for i in split[k]] for k in ("train", "val", "test")}
        self.frames["heldout"] = [f for f, o in zip(frames, out) if o]
        self.elements = self.elements or sorted({s for f in frames for s in f.get_chemical_symbols()})
        return self.frames


def make_config(system: str, model: str, out: Path, args) -> object:
    spec = SYSTEMS[system]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={spec['experiment']}", f"run_dir={out / system / model}",
                                          f"seed={args.seed}", "trainer.enable_progress_bar=false"])
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


def ev_curve(pots: dict, frames, out: Path) -> dict:
    """E/atom of bcc Ta (2-atom cubic cell) from 0.7 to 1.4 V0 against the DFT Volume_BCC points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.build import bulk

    dft = sorted((a.get_volume() / len(a), get_label(a, "energy") / len(a)) for a in frames
                 if "Volume_BCC" in str(a.info.get("mlpot_source")))
    v_dft, e_dft = np.array(dft).T
    v0 = float(v_dft[np.argmin(e_dft)])
    vols = np.linspace(0.7, 1.4, 36) * v0
    curves = {}
    for name, pot in pots.items():
        es = []
        for v in vols:
            atoms = bulk("Ta", "bcc", a=(2 * v) ** (1 / 3), cubic=True)
            es.append(float(pot.predict(atoms, forces=False)["energy"][0]) / len(atoms))
        curves[name] = es
    sel = (v_dft >= 0.7 * v0 - 1e-9) & (v_dft <= 1.4 * v0 + 1e-9)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(v_dft[sel] / v0, e_dft[sel], "ko", label="DFT (Volume_BCC, held out)")
    for name, es in curves.items():
        ax.plot(vols / v0, es, "-", label=name.upper())
    ax.set_xlabel("V / V0")
    ax.set_ylabel("E (eV/atom)")
    ax.set_title(f"bcc Ta, V0 = {v0:.2f} Å³/atom")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ev_curve_ta.png", dpi=130)
    plt.close(fig)
    errs = {}
    for name, pot in pots.items():  # model vs DFT at the DFT volumes in range
        pred = [float(pot.predict(bulk("Ta", "bcc", a=(2 * v) ** (1 / 3), cubic=True), forces=False)["energy"][0]) / 2
                for v in v_dft[sel]]
        errs[name] = float(np.sqrt(np.mean((np.array(pred) - e_dft[sel]) ** 2)))
    return {"v0": v0, "volumes": (vols / v0).tolist(), "curves": curves, "dft": [v_dft[sel].tolist(), e_dft[sel].tolist()],
            "rmse_vs_dft_eV_per_atom": errs}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=["ta", "mo"], choices=list(SYSTEMS))
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "transferability")
    ap.add_argument("--hdnnp-epochs", type=int, default=150)
    ap.add_argument("--pinn-epochs", type=int, default=60)
    ap.add_argument("--baseline-epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for these sizes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"load_average_start": os.getloadavg(), "args": {k: str(v) for k, v in vars(args).items()}}
    for system in args.systems:
        res, pots = {}, {}
        for model in ("hdnnp", "pinn"):
            cfg = make_config(system, model, args.out, args)
            t0 = time.perf_counter()
            run(cfg)
            seconds = time.perf_counter() - t0
            pot = load(args.out / system / model / "model.pt")
            dm = HeldOutData(**{k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
                                if k != "_target_"})
            frames = dm.load()
            groups = sorted({str(f.info["config_type"]) for f in frames["heldout"]})
            res[model] = {"in_distribution": rmse(pot, frames["test"]), "held_out": rmse(pot, frames["heldout"]),
                          "held_out_groups": {g: rmse(pot, [f for f in frames["heldout"] if f.info["config_type"] == g])
                                              for g in groups},
                          "seconds": seconds}
            pots[model] = pot
            print(system, model, json.dumps(res[model]), flush=True)
        if system == "ta":
            res["ev_curve"] = ev_curve(pots, frames["heldout"], args.out)
        results[system] = res
    results["load_average_end"] = os.getloadavg()
    (args.out / "transferability.json").write_text(json.dumps(results, indent=1))
    lines = ["| system | model | E in-dist (meV/atom) | E held out (meV/atom) | F in-dist (eV/Å) | F held out (eV/Å) |",
             "|---|---|---|---|---|---|"]
    for system in args.systems:
        for model in ("hdnnp", "pinn"):
            r = results[system][model]
            lines.append(f"| {system} | {model} | {1e3 * r['in_distribution']['energy_per_atom_rmse']:.1f} | "
                         f"{1e3 * r['held_out']['energy_per_atom_rmse']:.1f} | {r['in_distribution']['forces_rmse']:.3f} | "
                         f"{r['held_out']['forces_rmse']:.3f} |")
    lines += ["", "| system | model | held-out group | frames | E (meV/atom) | F (eV/Å) |", "|---|---|---|---|---|---|"]
    for system in args.systems:
        for model in ("hdnnp", "pinn"):
            for g, r in results[system][model]["held_out_groups"].items():
                lines.append(f"| {system} | {model} | {g} | {r['frames']} | {1e3 * r['energy_per_atom_rmse']:.1f} | "
                             f"{r['forces_rmse']:.3f} |")
    if "ta" in args.systems:
        errs = results["ta"]["ev_curve"]["rmse_vs_dft_eV_per_atom"]
        lines.append("")
        lines.append("bcc Ta E(V), 0.7-1.4 V0, RMSE vs DFT (eV/atom): "
                     + ", ".join(f"{k.upper()} {v:.3f}" for k, v in errs.items()))
    lines.append(f"\nload average: start {results['load_average_start']}, end {results['load_average_end']}")
    (args.out / "transferability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
