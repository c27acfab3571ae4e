#!/usr/bin/env python
"""Wall time of the whole ``nnp-predict`` process (n2p2, built by scripts/build_n2p2.sh) on a repeated cell.

    python scripts/benchmark_n2p2_predict.py [--potential ../shared/data/n2p2_cu2s] [--repeat 3 5] [--runs 3]

For each repeat n: a folder with the potential's input.nn, scaling.data, weights.*.data and an input.data holding
the first structure of ``--structure`` (default: the potential folder's input.data) repeated n x n x n; then
``nnp-predict 0`` is run ``--runs`` times with OMP_NUM_THREADS=1, each run timed from start to exit, with the
1-minute load average read just before it. Prints a table (and the energy per atom, which must not depend on n).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlpot.io.n2p2_data import read_input_data, write_input_data  # noqa: E402


def main(argv=None) -> int:
    default_build = Path(os.environ.get("MLPOT_N2P2_BUILD", ROOT / "build" / "n2p2"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--potential", type=Path, default=ROOT.parent / "shared" / "data" / "n2p2_cu2s",
                   help="folder with input.nn, scaling.data, weights.NNN.data")
    p.add_argument("--structure", type=Path, help="n2p2 input.data (first structure used); default: in --potential")
    p.add_argument("--repeat", type=int, nargs="+", default=[3], help="n for n x n x n copies of the cell")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--nnp-predict", type=Path, default=default_build / "bin" / "nnp-predict")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per run")
    p.add_argument("--workdir", type=Path, help="where the run folders go (default: a temporary folder, removed)")
    args = p.parse_args(argv)

    if not args.nnp_predict.is_file():
        print(f"{args.nnp_predict} not found: run scripts/build_n2p2.sh first", file=sys.stderr)
        return 2
    if not (args.potential / "input.nn").is_file():
        print(f"no n2p2 potential at {args.potential}", file=sys.stderr)
        return 2
    structure = args.structure or args.potential / "input.data"
    cell = read_input_data(structure)[0]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="n2p2_bench_"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    try:
        for n in args.repeat:
            folder = work / f"repeat_{n}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in ["input.nn", "scaling.data", *(q.name for q in args.potential.glob("weights.*.data"))]:
                shutil.copyfile(args.potential / f, folder / f)
            atoms = cell.repeat((n, n, n))
            atoms.info = {}  # the single cell's energy/forces labels do not describe the repeated one
            write_input_data(folder / "input.data", atoms)
            for run in range(1, args.runs + 1):
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                proc = subprocess.run([str(args.nnp_predict.resolve()), "0"], cwd=folder, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=args.timeout)
                wall = time.perf_counter() - t0
                if proc.returncode:
                    print(f"nnp-predict failed in {folder}: {proc.stderr.decode()[-500:]}", file=sys.stderr)
                    return 1
                energy = next(float(line.split()[3]) for line in (folder / "energy.out").read_text().splitlines()
                              if line.strip() and not line.startswith("#"))
                rows.append((f"{n}x{n}x{n}", len(atoms), run, wall, load, energy / len(atoms)))
                print(f"  {n}x{n}x{n} run {run}: {wall:.2f} s (load {load:.2f})", file=sys.stderr, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"nnp-predict: {args.nnp_predict}  potential: {args.potential}  OMP_NUM_THREADS=1")
    print(f"{'cell':>8} {'atoms':>7} {'run':>4} {'wall s':>8} {'load1':>6} {'E/atom eV':>20}")
    for cell_name, n_atoms, run, wall, load, e in rows:
        print(f"{cell_name:>8} {n_atoms:>7} {run:>4} {wall:>8.2f} {load:>6.2f} {e:>20.12f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
