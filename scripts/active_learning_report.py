"""How good is an mlpot-active run? Per iteration: its committee's force error on MD the loop never saw, and whether
the committee's spread knows where it is wrong.

Test set (EMT Cu, labelled by EMT, seeds the loop does not use): 1 000 K bulk (108 atoms), (111) and (100) slabs
at 600 K and a vacancy at 600 K, ``--frames`` frames each, every 50 steps of Langevin MD with EMT. Out of
distribution: the issue's 1 600 K liquid and cell compressed to 0.85 of its volume, and two sets further out (a
2 500 K liquid, 0.75 of the volume). For each iteration's committee: force RMSE of the mean (eV/Å), Spearman ρ
between each atom's force spread σ_F and its true force error |ΔF| (per atom; beside it the ρ a perfectly
calibrated spread would reach on the same atoms, :func:`calibrated_rho`) and between each frame's largest σ_F and
its largest |ΔF| (per frame: what the loop's selection ranks), the mean σ_F out of distribution over the mean σ_F on
the test set (the issue's two sets pooled), and per out-of-distribution set that ratio beside the ratio of the true
errors (a spread that follows the error rises as much as the error).

    python scripts/active_learning_report.py <run folder of mlpot-active> [--baseline <model.pt> ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from scipy.stats import spearmanr


ISSUE_OOD = ("liquid 1600 K", "compressed 0.85")  # the pooled ratio: the issue's liquid and compressed cell


def md_frames(atoms, T, n, seed, every=50):
    from mlpot.md.runner import thermalize

    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.calc = EMT()
    thermalize(atoms, T, rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=T, friction=0.02, rng=rng, fixcm=False)
    dyn.run(200)
    out = []
    for _ in range(n):
        dyn.run(every)
        f = atoms.copy()
        f.calc = None
        out.append((f, atoms.get_forces().copy()))
    return out


def _scaled(atoms, volume):
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell * volume ** (1 / 3), scale_atoms=True)
    return atoms


def test_sets(n: int):
    """The in-distribution test frames (one list) and the out-of-distribution sets by name: the issue's liquid
    (1 600 K) and compressed cell (0.85 of the volume), and two further out (a 2 500 K liquid, 0.75 of the volume),
    beyond what the preset's exploration (up to 1 400 K, 0.92-1.08 of the volume) reaches."""
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    vac = cu.repeat((3, 3, 3))
    del vac[0]
    ind = (md_frames(cu.repeat((3, 3, 3)), 1000.0, n, 101) + md_frames(fcc111("Cu", (3, 3, 4), a=3.61, vacuum=6.0),
           600.0, n, 102) + md_frames(fcc100("Cu", (3, 3, 4), a=3.61, vacuum=6.0), 600.0, n, 103)
           + md_frames(vac, 600.0, n, 104))
    c = cu.repeat((3, 3, 3))
    ood = {"liquid 1600 K": md_frames(_scaled(c, 1.05 ** 3), 1600.0, n, 105),
           "compressed 0.85": md_frames(_scaled(c, 0.85), 300.0, n, 106),
           "liquid 2500 K": md_frames(_scaled(c, 1.05 ** 3), 2500.0, n, 107),
           "compressed 0.75": md_frames(_scaled(c, 0.75), 300.0, n, 108)}
    return ind, ood


def calibrated_rho(spread, draws: int = 20, seed: int = 0) -> float:
    """Spearman ρ(σ, |ΔF|) that a perfectly calibrated spread would reach on these atoms: errors drawn as σ times
    the norm of a standard normal 3-vector (median over ``draws``). Where σ varies little among the atoms, even a
    perfect spread ranks single-atom errors poorly: this is the ceiling to read the measured ρ against."""
    rng = np.random.default_rng(seed)
    return float(np.median([spearmanr(spread, spread * np.linalg.norm(rng.normal(size=(len(spread), 3)), axis=1))
                            .statistic for _ in range(draws)]))


def evaluate(calc, frames):
    """Per atom: the true force error |ΔF| and the spread σ_F (concatenated over the frames); per frame: the largest
    of each (what the loop's selection ranks)."""
    err, spread = [], []
    for atoms, f_ref in frames:
        a = atoms.copy()
        a.calc = calc
        f = a.get_forces()
        err.append(np.linalg.norm(f - f_ref, axis=1))
        spread.append(np.asarray(calc.results.get("forces_std", np.zeros(len(a)))))
    frame_err, frame_spread = np.array([e.max() for e in err]), np.array([s.max() for s in spread])
    return np.concatenate(err), np.concatenate(spread), frame_err, frame_spread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--baseline", nargs="*", default=[], help="model.pt files (a committee) trained on other data")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from mlpot.active.loop import STATE, committee

    state = json.loads((Path(a.run) / STATE).read_text())
    ind, ood = test_sets(a.frames)
    rows = []
    cases = [(f"iteration {r['iteration']}", r["n_labelled"], r["model"]) for r in state["iterations"]]
    if a.baseline:
        cases.append(("baseline", None, a.baseline))
    for name, n_lab, models in cases:
        calc = committee(models if isinstance(models, str) or len(models) > 1 else models[0])
        err, spread, frame_err, frame_spread = evaluate(calc, ind)
        row = {"case": name, "n_labelled": n_lab, "test_force_rmse": float(np.sqrt(np.mean(err**2) / 3)),
               "test_force_error_rms_norm": float(np.sqrt(np.mean(err**2))),
               "spearman": float(spearmanr(spread, err).statistic), "spearman_calibrated": calibrated_rho(spread),
               "spearman_frames": float(spearmanr(frame_spread, frame_err).statistic),
               "mean_spread": float(spread.mean()), "ood": {}}
        pooled = []
        for set_name, frames in ood.items():
            e_o, s_o, _, fs_o = evaluate(calc, frames)
            row["ood"][set_name] = {"force_rmse": float(np.sqrt(np.mean(e_o**2) / 3)),
                                    "spread_ratio": float(s_o.mean() / spread.mean()),
                                    "frame_spread_ratio": float(fs_o.mean() / frame_spread.mean()),
                                    "error_ratio": float(np.sqrt(np.mean(e_o**2) / np.mean(err**2)))}
            if set_name in ISSUE_OOD:
                pooled.append((s_o, fs_o))
        row["ood_spread_ratio"] = float(np.concatenate([p[0] for p in pooled]).mean() / spread.mean())
        row["ood_frame_spread_ratio"] = float(np.concatenate([p[1] for p in pooled]).mean() / frame_spread.mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
    names = list(ood)
    print("\n| case | labelled frames | test force RMSE (eV/Å, per component) | ρ per atom (calibrated spread's) "
          "| ρ per frame | mean σ_F (eV/Å) | σ_F out of distribution / in (atoms, frames' max) | "
          + " | ".join(f"{n}: σ_F / error ratio" for n in names) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['case']} | {r['n_labelled'] if r['n_labelled'] is not None else '–'} | {r['test_force_rmse']:.4f} "
              f"| {r['spearman']:.2f} ({r['spearman_calibrated']:.2f}) | {r['spearman_frames']:.2f} "
              f"| {r['mean_spread']:.4f} | {r['ood_spread_ratio']:.1f} / {r['ood_frame_spread_ratio']:.1f} | "
              + " | ".join(f"{r['ood'][n]['spread_ratio']:.1f} / {r['ood'][n]['error_ratio']:.1f}" for n in names) + " |")
    if a.out:
        Path(a.out).write_text(json.dumps({"state": state, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
