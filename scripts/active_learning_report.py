"""How good is an mlpot-active run? Per iteration: its committee's force error on MD the loop never saw, and whether
the committee's spread knows where it is wrong.

Test set (EMT Cu, labelled by EMT, seeds the loop does not use): 1 000 K bulk (108 atoms), (111) and (100) slabs
at 600 K and a vacancy at 600 K, ``--frames`` frames each, every 50 steps of Langevin MD with EMT. Out of
distribution: a 1 600 K liquid and a cell compressed to 0.85 of its volume. For each iteration's committee:
force RMSE of the mean (eV/Å), Spearman ρ between each atom's force spread σ_F and its true force error |ΔF| (per
atom) and between each frame's largest σ_F and its largest |ΔF| (per frame: what the loop's selection ranks), and
the mean σ_F out of distribution over the mean σ_F on the test set.

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


def test_sets(n: int):
    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    vac = cu.repeat((3, 3, 3))
    del vac[0]
    ind = (md_frames(cu.repeat((3, 3, 3)), 1000.0, n, 101) + md_frames(fcc111("Cu", (3, 3, 4), a=3.61, vacuum=6.0),
           600.0, n, 102) + md_frames(fcc100("Cu", (3, 3, 4), a=3.61, vacuum=6.0), 600.0, n, 103)
           + md_frames(vac, 600.0, n, 104))
    liquid = cu.repeat((3, 3, 3))
    liquid.set_cell(liquid.cell * 1.05, scale_atoms=True)
    comp = cu.repeat((3, 3, 3))
    comp.set_cell(comp.cell * 0.85 ** (1 / 3), scale_atoms=True)
    ood = md_frames(liquid, 1600.0, n, 105) + md_frames(comp, 300.0, n, 106)
    return ind, ood


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
        _, spread_ood, _, frame_spread_ood = evaluate(calc, ood)
        row = {"case": name, "n_labelled": n_lab, "test_force_rmse": float(np.sqrt(np.mean(err**2) / 3)),
               "test_force_error_rms_norm": float(np.sqrt(np.mean(err**2))),
               "spearman": float(spearmanr(spread, err).statistic),
               "spearman_frames": float(spearmanr(frame_spread, frame_err).statistic),
               "mean_spread": float(spread.mean()), "ood_spread_ratio": float(spread_ood.mean() / spread.mean()),
               "ood_frame_spread_ratio": float(frame_spread_ood.mean() / frame_spread.mean())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| case | labelled frames | test force RMSE (eV/Å, per component) | ρ per atom | ρ per frame "
          "| mean σ_F (eV/Å) | σ_F out of distribution / in (atoms, frames' max) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['n_labelled'] if r['n_labelled'] is not None else '–'} | {r['test_force_rmse']:.4f} "
              f"| {r['spearman']:.2f} | {r['spearman_frames']:.2f} | {r['mean_spread']:.4f} "
              f"| {r['ood_spread_ratio']:.1f} / {r['ood_frame_spread_ratio']:.1f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"state": state, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
