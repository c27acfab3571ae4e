"""NVE energy drift of one model in both MD engines: ``mlpot-md engine=ase`` and ``engine=lammps`` (pair_style mlpot),
same structure, start and time step. Prints a table (drift = slope of a line fitted to E_tot(t), and the largest
excursion from the start, per atom) and writes it as JSON.

    python scripts/nve_drift_engines.py --model outputs/runs/<run>/model.pt --ps 10 --plugin build/lammps_plugin/mlpotplugin.so
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def drift(thermo: Path, n_atoms: int) -> dict:
    import csv

    with open(thermo, newline="") as f:
        rows = list(csv.DictReader(f))
    t = np.array([float(r["time_ps"]) if "time_ps" in r else float(r["step"]) for r in rows])
    e = np.array([float(r["etot_eV"]) for r in rows])
    slope = np.polyfit(t, e, 1)[0] if len(t) > 1 else float("nan")
    return {"drift_meV_per_atom_per_ps": 1e3 * slope / n_atoms,
            "max_excursion_meV_per_atom": 1e3 * float(np.abs(e - e[0]).max()) / n_atoms, "frames": len(rows)}


def main() -> None:
    from hydra import compose, initialize_config_dir

    from mlpot.md.app import run
    from mlpot.train import CONF_DIR

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ps", type=float, default=10.0)
    ap.add_argument("--timestep-fs", type=float, default=1.0)
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--plugin", default=None)
    ap.add_argument("--out", default="nve_drift")
    a = ap.parse_args()
    steps = int(round(a.ps * 1000 / a.timestep_fs))
    common = ["md/calculator=model", f"calculator.path={a.model}", f"calculator.dtype={a.dtype}", "md/ensemble=nve",
              f"steps={steps}", "interval=100", f"temperature_K={a.temperature}", f"timestep_fs={a.timestep_fs}",
              f"structure.repeat=[{a.repeat},{a.repeat},{a.repeat}]", "progress=false"]
    results = {}
    for engine in ("ase", "lammps"):
        extra = [f"engine={engine}"] + ([f"lammps.plugin={a.plugin}"] if engine == "lammps" and a.plugin else [])
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("md", overrides=[*common, *extra, f"output_dir={Path(a.out) / engine}"])
        t0 = time.perf_counter()
        run(cfg)
        wall = time.perf_counter() - t0
        n = 4 * a.repeat**3
        results[engine] = {**drift(Path(a.out) / engine / "thermo.csv", n), "wall_s": wall, "atoms": n,
                           "steps": steps}
    print(f"NVE {a.ps} ps, dt {a.timestep_fs} fs, {a.temperature} K start, {results['ase']['atoms']} atoms, {a.dtype}")
    print("| engine | drift meV/atom/ps | max excursion meV/atom | wall s |")
    print("|---|---|---|---|")
    for k, r in results.items():
        print(f"| {k} | {r['drift_meV_per_atom_per_ps']:+.2e} | {r['max_excursion_meV_per_atom']:.2e} | {r['wall_s']:.1f} |")
    Path(a.out, "nve_drift.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
