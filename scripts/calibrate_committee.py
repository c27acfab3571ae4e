"""Calibrate a committee's per-atom force spread against its true errors (docs/committee.md).

1. EMT Cu data (ASE's EMT, so every label is exact): in distribution, fcc crystal MD at 300-900 K (32 atoms);
   out of distribution, a liquid (melted at 3000 K, sampled at 1500 K) and a crystal compressed by 8 % in
   lattice constant (at 600 K).
2. ``mlpot-train committee.size=K`` on the crystal frames (one command: K members, one committee model.pt).
3. Per-atom force spread σ_i (calculator ``forces_std``) against the mean's error |ΔF_i| on the test split and on
   the out-of-distribution sets: Spearman ρ, binned RMS error against RMS spread, the ratio of the mean spread
   out of / in distribution. Writes ``calibration.json`` and ``calibration.png`` into ``--out``.

    OMP_NUM_THREADS=1 python scripts/calibrate_committee.py --out outputs/calibration   # ~5 min on one core
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def md_frames(atoms, temperature_K, n_frames, every, seed, equil=100, heat_K=None, heat_steps=0):
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase import units

    from mlpot.md.runner import thermalize

    atoms = atoms.copy()
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    if heat_K:
        thermalize(atoms, heat_K, rng)
        Langevin(atoms, 4 * units.fs, temperature_K=heat_K, friction=0.02 / units.fs, rng=rng).run(heat_steps)
    else:
        thermalize(atoms, temperature_K, rng)
    dyn = Langevin(atoms, 4 * units.fs, temperature_K=temperature_K, friction=0.01 / units.fs, rng=rng)
    dyn.run(equil)
    frames = []
    for _ in range(n_frames):
        dyn.run(every)
        a = atoms.copy()
        a.calc = None
        a.info["energy"] = atoms.get_potential_energy()
        a.arrays["forces"] = atoms.get_forces()
        a.info["stress"] = atoms.get_stress(voigt=False).reshape(-1)
        frames.append(a)
    return frames


def make_data(folder: Path, n_per_T: int) -> dict:
    import ase.io
    from ase.build import bulk

    crystal = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)  # 32 atoms
    sets = {"crystal": [], "liquid": [], "compressed": []}
    for k, T in enumerate((300.0, 500.0, 700.0, 900.0)):
        sets["crystal"] += md_frames(crystal, T, n_per_T, 10, seed=k)
    liquid = bulk("Cu", "fcc", a=3.78, cubic=True).repeat(2)
    sets["liquid"] = md_frames(liquid, 1500.0, 20, 10, seed=10, equil=50, heat_K=3000.0, heat_steps=300)
    compressed = bulk("Cu", "fcc", a=3.6 * 0.92, cubic=True).repeat(2)
    sets["compressed"] = md_frames(compressed, 600.0, 20, 10, seed=11)
    paths = {}
    for name, frames in sets.items():
        paths[name] = folder / f"{name}.extxyz"
        ase.io.write(paths[name], frames, format="extxyz")
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/calibration")
    p.add_argument("--size", type=int, default=4, help="committee members")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--frames-per-temperature", type=int, default=30)
    p.add_argument("--train-overrides", nargs="*", default=[])
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = make_data(out, args.frames_per_temperature)
    t_data = time.perf_counter() - t0

    overrides = [f"data.path={paths['crystal']}", f"data.cache_dir={out / 'cache'}", f"run_dir={out / 'run'}",
                 f"committee.size={args.size}", f"trainer.max_epochs={args.epochs}", "model.hidden=[16,16]",
                 "trainer.enable_progress_bar=false", "logger=csv", *args.train_overrides]
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlpot.train", *overrides, f"hydra.run.dir={out / 'run'}"], check=True)
    t_train = time.perf_counter() - t1

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from mlpot.calculator import MLPotCalculator
    from mlpot.data.frames import read_frames
    from mlpot.evaluate.uncertainty import calibration, committee_errors, plot_calibration
    from mlpot.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[o for o in overrides if not o.startswith("run_dir")] + [f"run_dir={out / 'run'}"])
    dm = instantiate(cfg.data)
    dm.load()
    sets = {"test split (crystal 300-900 K)": dm.atoms("test")}
    for name, label in (("liquid", "liquid 1500 K (OOD)"), ("compressed", "crystal -8 % lattice (OOD)")):
        sets[label] = read_frames(paths[name])
    calc = MLPotCalculator(out / "run" / "model.pt")
    results, raw = {}, {}
    for label, frames in sets.items():
        res = committee_errors(calc, frames)
        raw[label] = res
        cal = calibration(res["forces_std"], res["force_error"])
        cal["frames"] = len(frames)
        cal["forces_rmse_per_component"] = float(np.sqrt(np.mean(res["force_error"] ** 2) / 3))
        if res["energy_error_per_atom"].size > 2:
            e = calibration(res["energy_std_per_atom"], res["energy_error_per_atom"], bins=4)
            cal["energy"] = {k: e[k] for k in ("spearman", "mean_spread", "rmse")}
        results[label] = cal
    ind = results["test split (crystal 300-900 K)"]["mean_spread"]
    for label, cal in results.items():
        cal["spread_ratio_to_test"] = cal["mean_spread"] / ind
    pooled = calibration(np.concatenate([r["forces_std"] for r in raw.values()]),
                         np.concatenate([r["force_error"] for r in raw.values()]))
    plot_calibration(results, out / "calibration.png")
    summary = {
        "sets": results, "pooled": {k: pooled[k] for k in ("n", "spearman", "pearson", "mean_spread", "rmse")},
        "committee_size": args.size, "epochs": args.epochs, "train_overrides": overrides,
        "seconds": {"data": t_data, "train": t_train, "total": time.perf_counter() - t0},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_avg": os.getloadavg()},
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'set':34s} {'frames':>6s} {'F RMSE':>8s} {'mean σ':>8s} {'σ/σ_test':>8s} {'ρ':>6s}")
    for label, cal in results.items():
        print(f"{label:34s} {cal['frames']:6d} {cal['forces_rmse_per_component']:8.4f} {cal['mean_spread']:8.4f} "
              f"{cal['spread_ratio_to_test']:8.2f} {cal['spearman']:6.3f}")
    print(f"pooled: Spearman ρ {pooled['spearman']:.3f} over {pooled['n']} atoms; plot {out / 'calibration.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
