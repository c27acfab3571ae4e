"""Speed and memory of one MD step through ASE, per atom: mlpot's calculator against the previous version and
against ASE's and asap3's EMT.

    OMP_NUM_THREADS=1 python scripts/benchmark_md.py [--sizes 2048 16384 131072] [--threads 1]
        [--previous /work/bench/md_before] [--out outputs/md_speed.json]

Every (case, size) runs in a fresh process (so that peak memory is its own): fcc Cu (lattice 3.61 Å, cubic cell
repeated, positions rattled by 0.05 Å, Maxwell–Boltzmann momenta at 300 K), ASE's VelocityVerlet (1 fs) with an
observer that asks for the stress too, so a step is energy + forces + stress (``--forces-only``: no observer). ``--warmup`` steps (compiled cases:
at least 2, the first compiles) are not timed; then ``--repeats`` steps are timed one by one and the table gives
the fastest (the median is in the JSON).

Memory: peak resident set size of the process (``ru_maxrss``) minus its RSS just before the first step (model,
structure and torch loaded), per atom; that includes the neighbour list, the autograd graph and, for compiled
cases, what the compiler keeps.

Model: a random-weight 2x32 tanh HDNNP on the default ACSF (``conf/descriptor/acsf.yaml`` with the default
cutoff of 5 Å: 8 radial functions, 18 wide angular ones with their own 4 Å cutoff), built from a fixed seed, so
every version evaluates the same function. The previous version (``--previous``, a checkout of an older mlpot)
is run with ``PYTHONPATH`` pointing there and only gets the options it has (dtype); sizes whose estimated memory
(``--previous-kib-per-atom``) exceeds ``--max-gib`` are skipped.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (kind, calculator options)
CASES = {
    "previous f64": ("previous", {"dtype": "float64"}),
    "eager f64": ("mlpot", {"dtype": "float64", "compile": False}),
    "eager f32": ("mlpot", {"dtype": "float32", "compile": False}),
    "compiled f64": ("mlpot", {"dtype": "float64", "compile": True}),
    "compiled f32": ("mlpot", {"dtype": "float32", "compile": True}),
    "ASE EMT": ("ase_emt", {}),
    "asap3 EMT": ("asap3_emt", {}),
}


def default_model():
    """The benchmark's model: default ACSF for Cu, random 2x32 HDNNP (seeded)."""
    import torch

    from mlpot.descriptors.acsf import build_acsf
    from mlpot.models import HDNNP, Potential

    torch.manual_seed(0)
    d = build_acsf(["Cu"], cutoff=5.0, cutoff_function="cos",
                   radial=[{"eta": [0.01, 0.03, 0.06, 0.1, 0.2, 0.4, 0.8, 1.5], "rs": [0.0]}],
                   angular={"type": 9, "eta": [0.002, 0.01, 0.03], "zeta": [1, 2, 4], "lambda": [1, -1],
                            "rs": [0.0], "rc": 4.0})
    head = HDNNP(d.n_features_per_element, [32, 32], "tanh", e0=[-3.5])
    return Potential(["Cu"], d, head).double()


def structure(n_atoms: int, seed: int = 0):
    import numpy as np
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    rep = round((n_atoms / 4) ** (1 / 3))
    if 4 * rep**3 != n_atoms:
        raise SystemExit(f"--sizes: {n_atoms} is not 4 n^3 (fcc cubic cell repeated n times)")
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(rep)
    atoms.rattle(0.05, seed=seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    return atoms


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child_cu2s(args) -> None:
    """n2p2's Cu2S potential on its 144-atom structure 0 repeated ``--size`` times along each axis: the first
    energy + forces call (neighbour list, plan and, compiled, the compilation included) and the fastest of
    ``--repeats`` further calls (positions moved by 1e-3 Å each time); prints a JSON line."""
    import numpy as np
    import torch

    from mlpot.calculator import MLPotCalculator
    from mlpot.io import n2p2

    torch.set_num_threads(args.threads)
    _, opts = CASES[args.case]
    pot = n2p2.load(args.cu2s_folder)
    atoms = n2p2.read_input_data(Path(args.cu2s_folder) / "input.data")[0].repeat(args.size)
    calc = MLPotCalculator(pot, **opts)
    atoms.calc = calc
    base = rss_bytes()
    t0 = time.perf_counter()
    atoms.get_forces()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        atoms.positions += 1e-3
        t0 = time.perf_counter()
        atoms.get_forces()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"case": args.case, "cu2s_reps": args.size, "n_atoms": len(atoms), "first_call_s": first,
                      "call_s": min(times) if times else None, "peak_rss_gib": peak / 2**30,
                      "extra_gib": (peak - base) / 2**30, "energy": float(atoms.get_potential_energy()),
                      "max_force": float(np.abs(atoms.get_forces()).max()), "load": os.getloadavg(),
                      "compiled": bool(getattr(calc, "compile", False))}))


def child(args) -> None:
    """One case at one size; prints a JSON line."""
    import torch

    if args.cu2s_folder:
        return child_cu2s(args)
    torch.set_num_threads(args.threads)
    kind, opts = CASES[args.case]
    atoms = structure(args.size)
    if kind in ("mlpot", "previous"):
        from mlpot.calculator import MLPotCalculator

        accepted = inspect.signature(MLPotCalculator.__init__).parameters
        opts = {k: v for k, v in opts.items() if k in accepted}
        calc = MLPotCalculator(default_model(), **opts)
    elif kind == "ase_emt":
        from ase.calculators.emt import EMT

        calc = EMT()
    else:
        from asap3 import EMT

        calc = EMT()
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    if not args.forces_only:
        dyn.attach(lambda: atoms.get_stress(), interval=1)
    base = rss_bytes()
    warmup = max(args.warmup, 2 if opts.get("compile") else 1)
    t0 = time.perf_counter()
    dyn.run(warmup)
    t_warm = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        dyn.run(1)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times.sort()
    print(json.dumps({
        "case": args.case, "size": args.size, "us_per_atom_step": 1e6 * times[0] / args.size,
        "us_per_atom_step_median": 1e6 * times[len(times) // 2] / args.size, "warmup_s": t_warm,
        "peak_rss_gib": peak / 2**30, "kib_per_atom": (peak - base) / 1024 / args.size,
        "energy": float(atoms.get_potential_energy()), "load": os.getloadavg(),
        "compiled": bool(getattr(calc, "compile", False)),
    }))


def run_case(args, case: str, size: int, cu2s: bool = False) -> dict | None:
    kind, _ = CASES[case]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.malloc == "default":  # the calculator tunes the allocator itself unless told not to
        env["MLPOT_TUNE_MALLOC"] = "0"
    if kind == "previous":
        if not args.previous:
            return None
        if args.previous_kib_per_atom * size / 2**20 > args.max_gib:
            print(f"  {case} at {size}: skipped (estimated {args.previous_kib_per_atom * size / 2**20:.1f} GiB)")
            return None
        env["PYTHONPATH"] = str(Path(args.previous).resolve())
    else:
        env["PYTHONPATH"] = str(ROOT)
    if kind == "ase_emt" and size > args.ase_emt_max:
        return None
    cmd = [sys.executable, __file__, "--child", "--case", case, "--size", str(size), "--threads", str(args.threads),
           "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    if args.forces_only:
        cmd.append("--forces-only")
    if cu2s:
        cmd += ["--cu2s-folder", args.cu2s_folder]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {case} at {size}: failed ({last})")
        return {"case": case, "size": size, "error": last}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    if cu2s:
        print(f"  Cu2S x{size}^3 ({row['n_atoms']} atoms) {case:>13}: first call {row['first_call_s']:.2f} s, then "
              f"{row['call_s'] if row['call_s'] is not None else float('nan'):.2f} s; peak RSS "
              f"{row['peak_rss_gib']:.2f} GiB (+{row['extra_gib']:.2f}); load {row['load'][0]:.2f}"
              f"{'' if row['compiled'] or 'compiled' not in case else '  COMPILE FAILED: ran uncompiled'}", flush=True)
        return row
    print(f"  {case:>14} {size:>7}: {row['us_per_atom_step']:8.1f} us/atom-step  {row['kib_per_atom']:7.1f} KiB/atom"
          f"  (warm-up {row['warmup_s']:.1f} s, load {row['load'][0]:.2f})"
          f"{'' if row.get('compiled') or 'compiled' not in case else '  COMPILE FAILED: ran uncompiled'}", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[2048, 16384, 131072])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--previous", default="/work/bench/md_before", help="checkout of the previous version")
    p.add_argument("--previous-kib-per-atom", type=float, default=215.0)
    p.add_argument("--max-gib", type=float, default=16.0)
    p.add_argument("--ase-emt-max", type=int, default=2048, help="largest size for ASE's (pure Python) EMT")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--forces-only", action="store_true",
                   help="no stress observer: a step asks for energy and forces only (NVE without pressure output)")
    p.add_argument("--cu2s", type=int, nargs="*", default=[],
                   help="also n2p2's Cu2S potential on its 144-atom cell repeated n x n x n for each n given")
    p.add_argument("--cu2s-cases", nargs="+", default=["eager f64", "eager f32", "compiled f64", "compiled f32"])
    p.add_argument("--cu2s-folder", default=None, help="n2p2's Cu2S example (default ../shared/data/n2p2_cu2s)")
    p.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                   help="tuned: as MLPotCalculator does by itself (mlpot.system.tune_allocator); default: "
                        "MLPOT_TUNE_MALLOC=0, glibc's defaults (a previous version runs as it was either way)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.previous and not Path(args.previous).is_dir():
        print(f"previous version {args.previous} not found: skipped")
        args.previous = None
    rows = []
    print(f"load average at start: {os.getloadavg()}")
    if args.cu2s:
        args.cu2s_folder = args.cu2s_folder or str(ROOT.parent / "shared" / "data" / "n2p2_cu2s")
        for reps in args.cu2s:
            for case in args.cu2s_cases:
                row = run_case(args, case, reps, cu2s=True)
                if row is not None:
                    rows.append(row)
        args.cu2s_folder = None
    for size in args.sizes:
        for case in args.cases:
            row = run_case(args, case, size)
            if row is not None:
                rows.append(row)
    print(f"load average at end: {os.getloadavg()}")
    for case in args.cases if args.sizes else []:
        if case == args.cases[0]:
            print("\n| case | " + " | ".join(str(s) for s in args.sizes) + " |")
            print("|---|" + "---|" * len(args.sizes))
        cells = []
        for s in args.sizes:
            r = next((r for r in rows if r["case"] == case and r.get("size") == s and "cu2s_reps" not in r), None)
            cells.append("–" if r is None or "error" in r else f"{r['us_per_atom_step']:.1f} µs, {r['kib_per_atom']:.0f} KiB")
        print(f"| {case} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"sizes": args.sizes, "threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
